from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.logs.timestamps import format_rfc3339nano, format_rotation_suffix, parse_rfc3339


def test_format_trims_trailing_zeros_like_go() -> None:
    assert format_rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert format_rfc3339nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert format_rfc3339nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_parse_accepts_offsets_and_short_fractions() -> None:
    assert parse_rfc3339("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000
    assert parse_rfc3339("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert parse_rfc3339(b"2023-11-14T21:13:20.000000001-01:00") == 1_700_000_000_000_000_001


@pytest.mark.parametrize("bad", ["", "2023-11-14", "2023-11-14T22:13:20", "x 2023-11-14T22:13:20Z"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not an RFC3339 timestamp"):
        parse_rfc3339(bad)


@given(st.integers(min_value=0, max_value=4_000_000_000 * 1_000_000_000))
def test_round_trip(ns: int) -> None:
    assert parse_rfc3339(format_rfc3339nano(ns)) == ns


def test_rotation_suffix() -> None:
    assert format_rotation_suffix(1_700_000_000_999_000_000) == "20231114-221320"
