"""The whole-block formatting paths agree with formatting record by record, for any records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.logs import blocks
from gateway.logs.formatter import Formatter

_STAMPS = (b"2023-11-14T22:13:20Z", b"2023-11-14T22:13:20.5Z", b"2023-11-14T22:13:21.000000001Z")
# Content that looks like headers, tags and stamps must not be taken for them.
_CONTENT = st.sampled_from(
    [b"", b"x", b"a P b", b" P ", b"2023-11-14T22:13:20Z stdout F quoted", b"stdout P", b"\r"]
) | st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
_RECORD = st.tuples(
    st.sampled_from(_STAMPS),
    st.sampled_from([b"stdout", b"stderr"]),
    st.sampled_from([b"F", b"P"]),
    _CONTENT,
).map(lambda r: b" ".join(r) + b"\n")
_ODD = st.sampled_from([b"not a record\n", b"2023-11-14T22:13:20Z stdout P:x tagged\n", b"\n"])


def _by_records(block: bytes, *, timestamps: bool) -> bytes:
    return Formatter(timestamps=timestamps, since_ns=None, limit_bytes=None).format_records(block)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(_RECORD | _ODD, max_size=30))
def test_content_matches_records(records: list[bytes]) -> None:
    block = b"".join(records)
    fast = blocks.content(block)
    if fast is not None:
        assert fast == _by_records(block, timestamps=False)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(_RECORD, max_size=30), split=st.integers(min_value=0, max_value=30))
def test_stamped_blocks_match_records_across_block_boundaries(
    records: list[bytes], split: int
) -> None:
    """With timestamps, P records carry the line state from one block to the next."""
    fast = Formatter(timestamps=True, since_ns=None, limit_bytes=None)
    slow = Formatter(timestamps=True, since_ns=None, limit_bytes=None)
    first, second = b"".join(records[:split]), b"".join(records[split:])
    assert fast.format(first) + fast.format(second) == slow.format_records(
        first
    ) + slow.format_records(second)


def test_blocks_with_p_records_take_the_block_path() -> None:
    """A flush cuts a line into a P record now and then: such blocks are not handed over to
    formatting record by record (which is many times slower)."""
    block = (
        b"2023-11-14T22:13:20Z stdout F one\n" * 3
        + b"2023-11-14T22:13:20Z stdout P tw\n"
        + b"2023-11-14T22:13:21Z stdout F o\n"
        + b"2023-11-14T22:13:21Z stderr P e\n"
        + b"2023-11-14T22:13:21Z stderr F rr\n"
    )
    assert blocks.content(block) == b"one\n" * 3 + b"two\nerr\n"
    first, second = (
        block.index(b"2023-11-14T22:13:20Z stdout P"),
        block.index(b"2023-11-14T22:13:21Z stderr P"),
    )
    assert list(blocks.partial_records(block)) == [(first, first + 30), (second, second + 30)]


def test_stamped_content_keeps_each_records_stamp() -> None:
    block = b"2023-11-14T22:13:20Z stdout F a\n2023-11-14T22:13:21.5Z stderr F b\n"
    assert blocks.stamped_content(block) == (b"2023-11-14T22:13:20Z a\n2023-11-14T22:13:21.5Z b\n")
    # Content quoting the stream and tag fields: not removable by replacing them all.
    assert blocks.stamped_content(b"2023-11-14T22:13:20Z stdout F x stdout F y\n") is None
