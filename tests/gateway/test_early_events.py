"""Events a device sends before it is identified are kept for the runtime: bounded, but never
an exit or a start lost, however many came first."""

from __future__ import annotations

from gateway.device_node import EARLY_OUTPUT_LIMIT, EarlyEvents
from gateway.link.events import TaskExited, TaskLost, TaskOutput, TaskStarted


def test_exits_survive_a_flood_of_early_output() -> None:
    early = EarlyEvents()
    chunk = b"x" * 1000
    for i in range(20_000):  # 20 MB: far past the output budget
        early.add(TaskOutput("a/0/0", "stdout", i * len(chunk), chunk))
    early.add(TaskStarted("a/1/0"))
    early.add(TaskExited("a/0/0", 3, "exited", 20_000_000, 0))
    early.add(TaskLost("a/1/0", "device rebooted"))
    events = early.drain()
    output = [e for e in events if isinstance(e, TaskOutput)]
    assert sum(len(e.data) for e in output) <= EARLY_OUTPUT_LIMIT
    assert early.dropped_output == 20_000 * len(chunk) - sum(len(e.data) for e in output)
    assert TaskExited("a/0/0", 3, "exited", 20_000_000, 0) in events
    assert events[-2:] == [TaskStarted("a/1/0"), TaskLost("a/1/0", "device rebooted")]
    # per task: output before the exit that ends it
    assert events.index(output[-1]) < events.index(TaskExited("a/0/0", 3, "exited", 20_000_000, 0))


def test_many_events_per_task_coalesce_to_the_last_word() -> None:
    early = EarlyEvents()
    for _ in range(50_000):
        early.add(TaskStarted("t/0/0"))
        early.add(TaskExited("t/0/0", 0, "exited", 0, 0))
    assert early.drain() == [TaskStarted("t/0/0"), TaskExited("t/0/0", 0, "exited", 0, 0)]
    assert early.drain() == []
