"""`RequestRegistry` and `TaskListPages`: request bookkeeping and task-list paging, no device."""

from __future__ import annotations

import pytest

import firmware_protocol as wire
from gateway.errors import DeviceProtocolError
from gateway.link import task_list
from gateway.link.events import TaskInfo
from gateway.link.requests import RequestRegistry
from gateway.link.task_list import TaskListPages


def test_request_ids_are_u32_wrap_and_skip_zero() -> None:
    registry: RequestRegistry[str] = RequestRegistry(0xFFFFFFFE)
    assert [registry.new_id() for _ in range(3)] == [0xFFFFFFFE, 0xFFFFFFFF, 1]
    with pytest.raises(ValueError, match="non-zero u32"):
        RequestRegistry[str](0)


def test_a_reply_counts_only_for_its_request_kind_or_as_an_error() -> None:
    registry: RequestRegistry[str] = RequestRegistry(5)
    registry.add(wire.ListTasks(registry.new_id()), "lister")
    registry.add(wire.StartTask(registry.new_id(), "t", "app"), "starter")
    assert registry.waiter_for_reply(wire.TaskList(5)) == "lister"
    # A TASK_STARTED re-sent for an earlier session with id 5 never completes the listing.
    assert registry.waiter_for_reply(wire.TaskStarted(5, "t")) is None
    assert registry.waiter_for_reply(wire.TaskStarted(6, "t")) == "starter"
    assert registry.waiter_for_reply(wire.Error(6, 1, "no")) == "starter"
    assert registry.waiter_for_reply(wire.TaskStarted(0, "t")) is None  # unsolicited
    assert registry.waiter_for_reply(wire.TaskList(99)) is None
    assert sorted(registry.waiters_of([6, 99, 6])) == ["starter"]
    registry.remove(5)
    assert registry.waiter_for_reply(wire.TaskList(5)) is None
    assert registry.waiters() == ["starter"] and len(registry) == 1


def entry(task_id: str) -> wire.TaskInfo:
    return wire.TaskInfo(task_id, "app", True)


def test_pages_are_followed_and_merged_by_task_id() -> None:
    pages = TaskListPages("dev")
    assert pages.request(1) == wire.ListTasks(1, cursor=0)
    assert pages.add(wire.TaskList(1, (entry("a"), entry("b")), next_cursor=2)) is None
    assert pages.request(2) == wire.ListTasks(2, cursor=2)
    listed = pages.add(wire.TaskList(2, (entry("b"), entry("c"))))
    assert listed == [TaskInfo(t, "app", True, None, 0, 0) for t in ("a", "b", "c")]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (wire.TaskList(1, (), next_cursor=4), "broken task list"),
        (wire.TaskList(1, (entry("a"),), next_cursor=0), "broken task list"),
    ],
)
def test_a_page_that_cannot_be_right_is_refused(reply: wire.TaskList, words: str) -> None:
    with pytest.raises(DeviceProtocolError, match=words):
        TaskListPages("dev").add(reply)


def test_a_list_that_never_ends_or_grows_too_long_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(task_list, "MAX_LIST_PAGES", 3)
    pages = TaskListPages("dev")
    for n in (1, 2):
        assert pages.add(wire.TaskList(n, (entry(f"t{n}"),), next_cursor=n)) is None
    with pytest.raises(DeviceProtocolError, match="did not end within 3 pages"):
        pages.add(wire.TaskList(3, (entry("t3"),), next_cursor=3))
    monkeypatch.setattr(task_list, "MAX_LISTED_TASKS", 2)
    with pytest.raises(DeviceProtocolError, match="more than 2 tasks"):
        TaskListPages("dev").add(wire.TaskList(1, (entry("a"), entry("b"), entry("c"))))
