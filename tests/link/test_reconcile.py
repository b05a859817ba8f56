"""`reconcile` and `with_rehandshakes`: pure functions, checked without a device."""

from __future__ import annotations

import firmware_protocol as wire
from gateway.link.events import Reconciled, TaskExited, TaskInfo, TaskLost
from gateway.link.reconcile import Rehandshake, reconcile, with_rehandshakes


def running(task_id: str) -> TaskInfo:
    return TaskInfo(task_id, "app", True, None, 0, 0)


def finished(task_id: str, code: int | None = 3) -> TaskInfo:
    return TaskInfo(task_id, "app", False, code, 10, 2)


def test_each_known_running_task_is_surviving_exited_or_lost() -> None:
    known = {"runs": True, "ended": True, "gone": True, "trailing": False}
    listed = [running("runs"), finished("ended"), finished("trailing")]
    outcome = reconcile(known, listed, rebooted=False)
    assert outcome.events == (
        TaskExited("ended", 3, "exited while disconnected", 10, 2),
        TaskLost("gone", "missing on the device after reconnect"),
        Reconciled(False, ("runs",), ("gone",), tuple(listed)),
    )
    assert outcome.gone == ("ended", "gone")
    assert outcome.adopted == ()


def test_after_a_reboot_tasks_are_lost_because_of_it() -> None:
    outcome = reconcile({"a": True}, [], rebooted=True)
    assert outcome.events == (TaskLost("a", "device rebooted"), Reconciled(True, (), ("a",)))


def test_a_reported_exit_is_not_reported_again() -> None:
    outcome = reconcile({"done": True}, [finished("done")], False, lambda t: t == "done")
    assert outcome.gone == () and len(outcome.events) == 1


def test_an_exit_without_code_reads_minus_one() -> None:
    outcome = reconcile({"t": True}, [finished("t", code=None)], rebooted=False)
    assert outcome.events[0] == TaskExited("t", -1, "exited while disconnected", 10, 2)


def test_unknown_running_tasks_are_adopted_known_or_finished_ones_not() -> None:
    listed = [running("new"), running("known"), finished("old")]
    outcome = reconcile({"known": True}, listed, rebooted=False)
    assert outcome.adopted == ("new",)
    assert outcome.surviving == ("known",)


def _link_up() -> wire.LinkUp:
    hello = wire.Hello(
        versions=(1,),
        device_id="d",
        boot_id=1,
        firmware_name="fw",
        firmware_version="1",
        apps=(),
        task_slots=1,
        memory_total=0,
        max_frame=256,
        window=1,
    )
    welcome = wire.Welcome(
        version=1,
        session_id=1,
        max_frame=256,
        window=1,
        resume=False,
        heartbeat_ms=1000,
        link_lost_ms=3000,
    )
    return wire.LinkUp(hello, welcome, resumed=False)


def test_a_link_lost_followed_by_link_up_in_one_batch_is_a_rehandshake() -> None:
    up = _link_up()
    lost = wire.LinkLost("peer said HELLO")
    assert with_rehandshakes([lost, up]) == [Rehandshake("peer said HELLO"), up]
    assert with_rehandshakes([up, lost]) == [up, lost]  # came up, then lost: really lost
    assert with_rehandshakes([lost]) == [lost]
    assert with_rehandshakes([lost, lost, up]) == [
        Rehandshake("peer said HELLO"),
        Rehandshake("peer said HELLO"),
        up,
    ]
