"""DeviceSession against emulated devices over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from firmware_protocol import Frame, FrameFlags, Ping
from gateway.device_node import node_facts
from gateway.errors import DeviceRejected, LinkDown, UnsupportedProtocolVersion
from gateway.link.events import (
    Reconciled,
    SessionStateChanged,
    TaskExited,
    TaskLost,
    TaskOutput,
    TaskStarted,
)
from gateway.link.state import SessionState
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile, fleet_profiles
from tests.link.helpers import FAST_LINK, WAIT, next_matching, session_for


def went_down(event: object) -> bool:
    return isinstance(event, SessionStateChanged) and event.new is SessionState.DOWN


async def collect_output(sub: object, task_id: str) -> tuple[bytes, TaskExited]:
    """Concatenate a task's stdout until its exit report."""
    from gateway.link.session import EventSubscription

    assert isinstance(sub, EventSubscription)
    out = bytearray()
    while True:
        event = await sub.get(WAIT)
        if isinstance(event, TaskOutput) and event.task_id == task_id:
            assert event.offset == len(out), "output must arrive in order without gaps"
            out += event.data
        elif isinstance(event, TaskExited) and event.task_id == task_id:
            return bytes(out), event


async def test_handshake_reports_device_facts(tmp_path: Path) -> None:
    profile = DeviceProfile(
        device_id="board-7",
        firmware_name="fw",
        firmware_version="2.1.0",
        apps=("echo", "counter"),
        task_slots=3,
        memory_bytes=128 * 1024,
        arch="riscv",
        vendor="Acme",
        product="Blinky-M4",
        serial="A1B2C3",
    )
    async with (
        EmulatedFleet(tmp_path, [profile], link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "board-7") as session,
    ):
        facts = await session.wait_up(WAIT)
        assert (facts.vendor, facts.product, facts.serial) == ("Acme", "Blinky-M4", "A1B2C3")
        node = node_facts(facts)
        assert (node.vendor, node.product, node.serial) == ("Acme", "Blinky-M4", "A1B2C3")
        assert node.device_id == "board-7"
        assert facts.device_id == "board-7"
        assert facts.firmware_name == "fw"
        assert facts.firmware_version == "2.1.0"
        assert facts.apps == ("echo", "counter")
        assert facts.task_slots == 3
        assert facts.memory_bytes == 128 * 1024
        assert facts.arch == "riscv"
        assert facts.transport == "serial"
        assert facts.port == fleet.device("board-7").tty
        assert facts.boot_id == fleet.device("board-7").boot_id
        assert session.state is SessionState.UP


async def test_argv_and_env_arrive_intact(tmp_path: Path) -> None:
    argv = ["echo", "two words", "ünïcödé", "", "--flag=a=b"]
    env = {"PLAIN": "x", "SPACES": "a b c", "EQUALS": "k=v", "EMPTY": ""}
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "emu-0000") as session,
    ):
        await session.wait_up(WAIT)
        sub = session.subscribe()
        await session.start_task("t-echo", "echo", argv, env)
        out, exited = await collect_output(sub, "t-echo")
        sub.close()
        assert exited.exit_code == 0
        lines = out.decode().splitlines()
        assert lines[0] == "argv: " + " ".join(argv)
        assert lines[1:] == [f"{k}={v}" for k, v in sorted(env.items())]
        start = [m for m in fleet.device("emu-0000").received if type(m).__name__ == "StartTask"]
        assert start[-1].argv == tuple(argv)  # type: ignore[attr-defined]
        assert dict(start[-1].env) == env  # type: ignore[attr-defined]


async def test_start_exit_and_stop(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK),
        session_for(tmp_path, "emu-0000") as session,
    ):
        await session.wait_up(WAIT)
        sub = session.subscribe()

        await session.start_task("t-exit", "exit", ["exit", "3", "bye"])
        assert await next_matching(sub, lambda e: isinstance(e, TaskStarted)) == TaskStarted(
            "t-exit"
        )
        exited = await next_matching(sub, lambda e: isinstance(e, TaskExited))
        assert isinstance(exited, TaskExited)
        assert (exited.task_id, exited.exit_code, exited.stderr_end) == ("t-exit", 3, 4)

        await session.start_task("t-count", "counter", ["counter", "5", "1"])
        out, exited = await collect_output(sub, "t-count")
        assert out == b"1\n2\n3\n4\n5\n"
        assert exited.exit_code == 0 and exited.stdout_end == len(out)

        await session.start_task("t-forever", "forever", ["forever", "5"])
        await next_matching(sub, lambda e: isinstance(e, TaskOutput))
        assert [t.task_id for t in await session.list_tasks() if t.running] == ["t-forever"]
        await session.stop_task("t-forever", grace_s=5)
        exited = await next_matching(sub, lambda e: isinstance(e, TaskExited))
        assert isinstance(exited, TaskExited)
        assert (exited.exit_code, exited.reason) == (143, "stopped")
        assert not any(t.running for t in await session.list_tasks())
        sub.close()


async def test_device_refusals_are_clear_errors(tmp_path: Path) -> None:
    profile = dataclasses.replace(fleet_profiles(1)[0], task_slots=1)
    async with (
        EmulatedFleet(tmp_path, [profile], link_config=FAST_LINK),
        session_for(tmp_path, "emu-0000") as session,
    ):
        await session.wait_up(WAIT)
        with pytest.raises(DeviceRejected) as rejected:
            await session.start_task("t1", "no-such-app")
        assert rejected.value.code == "NO_SUCH_APP"
        await session.start_task("t1", "forever")
        await session.start_task("t1", "forever")  # idempotent while running
        with pytest.raises(DeviceRejected) as rejected:
            await session.start_task("t2", "forever")
        assert rejected.value.code == "NO_SLOTS"
        with pytest.raises(DeviceRejected) as rejected:
            await session.stop_task("nope", 1)
        assert rejected.value.code == "NO_SUCH_TASK"
        assert session.state is SessionState.UP


async def test_unplug_replug_new_tty_reconnects_and_reconciles(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "emu-0000") as session,
    ):
        device = fleet.device("emu-0000")
        await session.wait_up(WAIT)
        sub = session.subscribe()
        await session.start_task("survivor", "forever", ["forever", "10"])
        await session.start_task("short", "exit", ["exit", "0"])
        await next_matching(sub, lambda e: isinstance(e, TaskExited))
        old_tty = device.tty

        device.unplug()
        assert not (tmp_path / "emu-0000").exists()
        await next_matching(sub, went_down)
        with pytest.raises(LinkDown):
            await session.list_tasks()

        new_tty = device.plug()
        assert new_tty != old_tty
        assert (tmp_path / "emu-0000").resolve() == Path(new_tty)
        reconciled = await next_matching(sub, lambda e: isinstance(e, Reconciled))
        assert isinstance(reconciled, Reconciled)
        assert reconciled.surviving == ("survivor",)
        assert reconciled.lost == ()
        assert not reconciled.rebooted
        await session.wait_up(WAIT)
        assert session.facts is not None and session.facts.port == new_tty
        # The task kept running across the re-plug and its output continues without a gap.
        running = [t.task_id for t in await session.list_tasks() if t.running]
        assert running == ["survivor"]
        assert session.stats.disconnects == 1
        sub.close()


async def test_reboot_mid_task_reports_task_lost(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "emu-0000") as session,
    ):
        first = await session.wait_up(WAIT)
        sub = session.subscribe()
        await session.start_task("victim", "forever", ["forever", "10"])
        await next_matching(sub, lambda e: isinstance(e, TaskOutput))
        fleet.device("emu-0000").reboot()
        lost = await next_matching(sub, lambda e: isinstance(e, TaskLost))
        assert lost == TaskLost("victim", "device rebooted")
        reconciled = await next_matching(sub, lambda e: isinstance(e, Reconciled))
        assert isinstance(reconciled, Reconciled) and reconciled.rebooted
        assert session.facts is not None and session.facts.boot_id != first.boot_id
        assert await session.list_tasks() == []
        sub.close()


async def test_reboot_app_reboots_device_mid_task(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK),
        session_for(tmp_path, "emu-0000") as session,
    ):
        await session.wait_up(WAIT)
        sub = session.subscribe()
        await session.start_task("other", "forever", ["forever", "10"])
        await session.start_task("boom", "reboot", ["reboot", "5"])
        lost: dict[str, str] = {}
        while len(lost) < 2:
            event = await next_matching(sub, lambda e: isinstance(e, TaskLost))
            assert isinstance(event, TaskLost)
            lost[event.task_id] = event.reason
        assert lost == {"other": "device rebooted", "boom": "device rebooted"}
        sub.close()


async def test_unsupported_protocol_version_is_refused_others_carry_on(tmp_path: Path) -> None:
    good, odd = fleet_profiles(2)
    odd = dataclasses.replace(odd, protocol_versions=(99,))
    async with (
        EmulatedFleet(tmp_path, [good, odd], link_config=FAST_LINK),
        session_for(tmp_path, odd.device_id) as bad_session,
        session_for(tmp_path, good.device_id) as good_session,
    ):
        with pytest.raises(UnsupportedProtocolVersion, match="99"):
            await bad_session.wait_up(WAIT)
        assert bad_session.state is not SessionState.UP
        await good_session.wait_up(WAIT)
        await good_session.start_task("t", "exit", ["exit", "0"])


async def test_hung_device_goes_down_and_comes_back(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(2), link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "emu-0000") as hung,
        session_for(tmp_path, "emu-0001") as fine,
    ):
        await hung.wait_up(WAIT)
        await fine.wait_up(WAIT)
        sub = hung.subscribe()
        fleet.device("emu-0000").hang()
        await next_matching(sub, went_down)
        with pytest.raises(LinkDown):
            await hung.start_task("t", "echo")
        # The other device is unaffected.
        await fine.start_task("t", "exit", ["exit", "0"])
        assert fine.state is SessionState.UP
        fleet.device("emu-0000").resume()
        await hung.wait_up(WAIT)
        await hung.start_task("t", "exit", ["exit", "0"])
        sub.close()


async def test_garbage_and_oversize_frames_do_not_break_the_link(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "emu-0000") as session,
    ):
        await session.wait_up(WAIT)
        device = fleet.device("emu-0000")
        device.inject_raw(bytes(range(256)) * 4)  # noise with delimiters scattered in it
        device.inject_raw(b"\x01" * 10_000 + b"\x00")  # one frame far over any max_frame
        device.inject_raw(b"\xff\xfe\x00\x00\x00")  # short junk frames
        await session.start_task("t", "counter", ["counter", "3", "1"])
        tasks = await session.list_tasks()
        assert [t.task_id for t in tasks] == ["t"]
        assert session.state is SessionState.UP
        assert session.stats.bad_frames > 0


async def test_new_gateway_session_adopts_running_tasks(tmp_path: Path) -> None:
    async with EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK):
        async with session_for(tmp_path, "emu-0000") as first:
            await first.wait_up(WAIT)
            sub = first.subscribe()
            await first.start_task("keep", "forever", ["forever", "5"])
            seen = await next_matching(sub, lambda e: isinstance(e, TaskOutput))
            sub.close()
        # A restarted gateway: a new session (new session id) on the same, still running device.
        second = session_for(tmp_path, "emu-0000")
        sub = second.subscribe()
        async with second:
            reconciled = await next_matching(sub, lambda e: isinstance(e, Reconciled))
            assert isinstance(reconciled, Reconciled) and not reconciled.rebooted
            assert [(t.task_id, t.running) for t in reconciled.device_tasks] == [("keep", True)]
            more = await next_matching(
                sub, lambda e: isinstance(e, TaskOutput) and e.task_id == "keep"
            )
            assert isinstance(more, TaskOutput) and isinstance(seen, TaskOutput)
            assert more.offset >= seen.end  # the stream continues; nothing restarts at 0
            await second.wait_up(WAIT)
            await second.stop_task("keep", 5)
            exited = await next_matching(sub, lambda e: isinstance(e, TaskExited))
            assert isinstance(exited, TaskExited) and exited.exit_code == 143
        sub.close()


async def test_a_device_flooding_pings_without_reading_gets_no_pong_pile(tmp_path: Path) -> None:
    """A hostile device that never reads its tty and sends PINGs as fast as it can: the gateway
    answers the latest PING once per write instead of building a PONG per PING behind the
    full tty (memory growing with the flood), and the other device is served meanwhile."""
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(2), link_config=FAST_LINK) as fleet,
        session_for(tmp_path, "emu-0000") as flooded,
        session_for(tmp_path, "emu-0001") as fine,
    ):
        await flooded.wait_up(WAIT)
        await fine.wait_up(WAIT)
        hostile = fleet.device("emu-0000")
        hostile.hang()
        hostile.stop_reading()
        burst = b"".join(
            Frame(1, Ping.TYPE, FrameFlags.NONE, 0, 0, Ping(n).to_bytes()).to_bytes()
            for n in range(1, 1001)
        )
        pings = 100_000
        for _ in range(pings // 1000):
            hostile.inject_raw(burst)
            await asyncio.sleep(0)
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            if flooded.stats.frames_in >= pings:
                break
            await asyncio.sleep(0.05)
        assert flooded.stats.frames_in >= pings
        assert flooded.stats.frames_out < pings // 10
        await fine.start_task("t", "exit", ["exit", "0"])
        assert fine.state is SessionState.UP
