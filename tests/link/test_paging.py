"""Task lists larger than one frame (PROTOCOL.md section 9, paging), device load reports, and
devices that lie: the gateway and the emulator over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_protocol import ListTasks
from gateway.errors import DeviceProtocolError
from gateway.link import output_ledger, task_list
from gateway.link.events import Reconciled, SessionStateChanged, TaskExited, TaskOutput
from gateway.link.session import DeviceSession
from gateway.link.state import SessionState
from hil.emulator.device import EmulatedDevice
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from tests.link.helpers import FAST_LINK, FAST_SESSION, WAIT, next_matching, session_for

# Both ends declare small frames: a task list of a few tasks already needs several pages.
SMALL_LINK = dataclasses.replace(FAST_LINK, max_frame=256)
SMALL_SESSION = dataclasses.replace(FAST_SESSION, link=SMALL_LINK)


def pod_task_id(n: int) -> str:
    """Shaped like the gateway's ids: `<pod uid>/<container>/<restart>`, 40 bytes."""
    return f"{uuid.UUID(int=n)}/0/0"


def board(task_slots: int = 4, remembered_tasks: int = 16) -> DeviceProfile:
    return DeviceProfile(
        device_id="board", max_frame=256, task_slots=task_slots, remembered_tasks=remembered_tasks
    )


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition the test cannot await directly (bounded; never a timing assertion)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 (a plain attribute, nothing to await)
            await asyncio.sleep(0.01)
    assert condition(), what


def exit_of(task_id: str) -> Callable[[object], bool]:
    return lambda e: isinstance(e, TaskExited) and e.task_id == task_id


def list_requests(device: EmulatedDevice) -> list[ListTasks]:
    return [m for m in device.received if isinstance(m, ListTasks)]


async def reconciled_on_new_session(directory: Path) -> Reconciled:
    """A restarted gateway: a new session (new session id) reconciles with the device."""
    session = session_for(directory, "board", SMALL_SESSION)
    sub = session.subscribe()
    async with session:
        event = await next_matching(sub, lambda e: isinstance(e, Reconciled))
        assert isinstance(event, Reconciled)
        await session.wait_up(WAIT)
    sub.close()
    return event


async def test_device_at_its_task_limit_lists_every_task_after_replug_and_restart(
    tmp_path: Path,
) -> None:
    """20 running tasks with 40-byte ids do not fit one 256-byte frame: they come in pages."""
    slots = 20
    ids = [pod_task_id(i) for i in range(slots)]
    async with EmulatedFleet(tmp_path, [board(task_slots=slots)], link_config=SMALL_LINK) as fleet:
        device = fleet.device("board")
        async with session_for(tmp_path, "board", SMALL_SESSION) as session:
            await session.wait_up(WAIT)
            for task_id in ids:
                await session.start_task(task_id, "forever", ["forever", "1000"])
            listed = await session.list_tasks()
            assert sorted(t.task_id for t in listed) == sorted(ids)
            assert all(t.running for t in listed)
            cursors = [m.cursor for m in list_requests(device)]
            assert len(cursors) > 3 and cursors[-1] > 0, "the list needs several pages"

            sub = session.subscribe()
            device.replug()
            event = await next_matching(sub, lambda e: isinstance(e, Reconciled))
            assert isinstance(event, Reconciled)
            assert sorted(event.surviving) == sorted(ids) and event.lost == ()
            await session.wait_up(WAIT)
            sub.close()

        event = await reconciled_on_new_session(tmp_path)
        assert not event.rebooted
        assert sorted(t.task_id for t in event.device_tasks) == sorted(ids)
        assert all(t.running for t in event.device_tasks)


async def test_many_remembered_finished_tasks_are_all_reconciled(tmp_path: Path) -> None:
    """40 finished tasks the device remembers, plus running ones: every one is listed."""
    profile = board(task_slots=4, remembered_tasks=40)
    finished = [pod_task_id(i) for i in range(45)]  # the 5 oldest are forgotten
    running = [pod_task_id(100 + i) for i in range(4)]
    async with EmulatedFleet(tmp_path, [profile], link_config=SMALL_LINK) as fleet:
        device = fleet.device("board")
        async with session_for(tmp_path, "board", SMALL_SESSION) as session:
            await session.wait_up(WAIT)
            sub = session.subscribe()
            for task_id in finished:
                await session.start_task(task_id, "exit", ["exit", "3", "bye"])
                await next_matching(sub, exit_of(task_id))
            for task_id in running:
                await session.start_task(task_id, "forever", ["forever", "1000"])
            sub.close()
            remembered = finished[5:]
            listed = await session.list_tasks()
            assert sorted(t.task_id for t in listed) == sorted(remembered + running)

        event = await reconciled_on_new_session(tmp_path)
        by_id = {t.task_id: t for t in event.device_tasks}
        assert sorted(by_id) == sorted(remembered + running)
        assert all(not by_id[t].running and by_id[t].exit_code == 3 for t in remembered)
        assert all(by_id[t].stderr_end == 4 for t in remembered)
        assert all(by_id[t].running for t in running)
        assert len(list_requests(device)) >= 2 * 10, "listings of 44 tasks take several pages"


async def test_ended_tasks_leave_the_load_report(tmp_path: Path) -> None:
    """The device's load must drop a task that ended by itself (not only one that was
    stopped), or node and pod stats stay stale."""
    async with (
        EmulatedFleet(tmp_path, [board()], link_config=SMALL_LINK),
        session_for(tmp_path, "board", SMALL_SESSION) as session,
    ):
        await session.wait_up(WAIT)
        sub = session.subscribe()
        await session.start_task("stays", "forever", ["forever", "1000"])
        await session.start_task("ends", "counter", ["counter", "3", "10"])
        await next_matching(sub, lambda e: isinstance(e, TaskExited) and e.task_id == "ends")
        sub.close()
        ended_ns = session.load.sampled_ns if session.load else 0
        # The next heartbeat answer after the exit (heartbeats every 0.1 s).
        await wait_for(
            lambda: session.load is not None and session.load.sampled_ns > ended_ns,
            "a load report after the exit",
        )
        assert session.load is not None
        assert set(session.load.tasks) == {"stays"}
        assert session.load.cpu_millicores == 100  # one running task


async def test_a_task_list_that_never_ends_is_a_clear_error(tmp_path: Path) -> None:
    async with EmulatedFleet(tmp_path, [board()], link_config=SMALL_LINK) as fleet:
        device = fleet.device("board")
        async with session_for(tmp_path, "board", SMALL_SESSION) as session:
            await session.wait_up(WAIT)
            await session.start_task("t", "forever", ["forever", "1000"])
            device.misbehaviour.endless_task_list = True
            with pytest.raises(DeviceProtocolError, match="did not end within 1024 pages"):
                await session.list_tasks()
            assert len(list_requests(device)) <= 1 + task_list.MAX_LIST_PAGES
            # The link itself is fine: other requests still work.
            await session.stop_task("t", 1)


async def test_a_task_list_cursor_that_does_not_grow_is_refused_at_once(tmp_path: Path) -> None:
    async with EmulatedFleet(tmp_path, [board()], link_config=SMALL_LINK) as fleet:
        device = fleet.device("board")
        # With no task to show: an empty page "to be continued".
        device.misbehaviour.endless_task_list = True
        session = session_for(tmp_path, "board", SMALL_SESSION)
        async with session:
            with pytest.raises(DeviceProtocolError, match="broken task list") as info:
                await session.wait_up(WAIT)
            assert "0 task(s) and next_cursor 1" in str(info.value)
        assert len(list_requests(device)) >= 1


async def test_a_broken_task_list_after_a_reboot_drops_the_connection(tmp_path: Path) -> None:
    """A device that reboots while connected and then answers LIST_TASKS with a broken list
    cannot be reconciled in place: the session ends the connection (the node shows the link
    down with the reason) rather than keeping tasks the device no longer runs."""
    async with EmulatedFleet(tmp_path, [board()], link_config=SMALL_LINK) as fleet:
        device = fleet.device("board")
        async with session_for(tmp_path, "board", SMALL_SESSION) as session:
            await session.wait_up(WAIT)
            sub = session.subscribe()
            await session.start_task("t", "forever", ["forever", "1000"])
            device.misbehaviour.endless_task_list = True
            device.reboot()
            down = await next_matching(
                sub,
                lambda e: (
                    isinstance(e, SessionStateChanged)
                    and e.new is SessionState.DOWN
                    and "reconcile failed" in e.reason
                ),
            )
            sub.close()
            assert isinstance(down, SessionStateChanged)
            assert "task list" in down.reason
            assert isinstance(session.last_error, DeviceProtocolError)


async def acknowledge_all_output(session: DeviceSession) -> None:
    """What the runtime does with output it has no pod for: acknowledge it at once."""
    sub = session.subscribe()
    try:
        async for event in sub:
            if isinstance(event, TaskOutput):
                session.ack_output(event.task_id, event.stream, event.end)
    finally:
        sub.close()


async def test_output_for_unknown_tasks_is_dropped_and_state_stays_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hostile device floods TASK_OUTPUT for random task ids, from before its task list
    on: the session drops and counts it, keeps its per-device state bounded, warns a few
    times only, and keeps serving the device."""
    holding = dataclasses.replace(SMALL_SESSION, hold_output=True)
    async with EmulatedFleet(tmp_path, [board()], link_config=SMALL_LINK) as fleet:
        device = fleet.device("board")
        device.misbehaviour.foreign_output = True
        session: DeviceSession = session_for(tmp_path, "board", holding)
        sub = session.subscribe()
        consumer = asyncio.create_task(acknowledge_all_output(session))
        with caplog.at_level(logging.WARNING, logger="gateway.link.session"):
            async with session:
                await session.wait_up(WAIT)
                drops = 5000
                await wait_for(
                    lambda: session.stats.dropped_reports >= drops, f"{drops} dropped reports"
                )
                sizes = session.state_sizes()
                assert sizes["tasks"] == 0, sizes  # taken before the list, then reconciled away
                assert sizes["trailing"] == 0 and sizes["listed"] == 0
                assert sizes["exited"] <= output_ledger.MAX_UNLISTED_OUTPUT_TASKS
                assert sizes["drop_warned"] <= 5
                starts = session.stats.dropped_reports - session.stats.dropped_output_bytes // 32
                assert 0 < starts < session.stats.dropped_reports // 4  # one in eight
                assert device.foreign_output_sent >= drops

                # The device is still served: its real tasks start and report output.
                device.misbehaviour.foreign_output = False
                await session.start_task("real", "counter", ["counter", "2", "1"])
                got = await next_matching(
                    sub, lambda e: isinstance(e, TaskOutput) and e.task_id == "real"
                )
                assert isinstance(got, TaskOutput) and got.data == b"1\n"
        consumer.cancel()
        sub.close()
    warnings = [r for r in caplog.records if "unknown task" in r.getMessage()]
    assert 1 <= len(warnings) <= 5
