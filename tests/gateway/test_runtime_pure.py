"""Task ids round-trip; restart back-off follows the kubelet's schedule."""

from __future__ import annotations

from gateway.runtime.backoff import BackoffPolicy, RestartBackoff
from gateway.runtime.task_ids import TaskName, parse_task_id

UID = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f"


def test_task_id_round_trip_and_limit() -> None:
    name = TaskName(UID, 3, 12)
    assert parse_task_id(str(name)) == name
    assert len(str(TaskName(UID, 99, 99999))) <= 48


def test_foreign_task_ids_are_not_ours() -> None:
    for text in ("blink", "a/b/c", "x/1", f"{UID}/1/2/3", "/1/2"):
        assert parse_task_id(text) is None


def test_backoff_schedule() -> None:
    backoff = RestartBackoff(BackoffPolicy(initial_s=10, max_s=40, reset_after_s=100))
    backoff.started(0.0)
    delays = [backoff.next_delay(1.0) for _ in range(5)]
    assert delays == [0.0, 10.0, 20.0, 40.0, 40.0]
    backoff.started(200.0)
    assert backoff.next_delay(350.0) == 0.0  # ran long enough: starts over


def test_quantities() -> None:
    from decimal import Decimal

    import pytest

    from gateway.kube.quantity import parse_quantity

    assert parse_quantity("256Ki") == 262144
    assert parse_quantity("1.5G") == Decimal("1.5e9")
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity(4) == 4
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("lots")
