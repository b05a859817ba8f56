"""The reference firmware's apps behave as the emulator's (hil/emulator/apps.py): the same argv
gives the same stdout, stderr and exit code on a QEMU board (Cortex-M3 and Arduino Mega 2560) as
on an emulated device; a stop ends a task with 143; the `reboot` app resets the board itself."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.link.events import Reconciled, TaskExited, TaskOutput
from gateway.link.session import DeviceSession, EventSubscription, SessionConfig
from gateway.transport.serial import serial_opener
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from hil.qemu import QemuFleet, missing_tools
from hil.qemu.targets import TARGETS

pytestmark = pytest.mark.timeout(240)
# QEMU's AVR model runs slower than a real board when the host is busy (it spins a core):
# give requests the slack a slow serial device gets, not the emulator's 5 s.
BOARD_SESSION = dataclasses.replace(SessionConfig(), request_timeout=20.0)

Env = tuple[tuple[str, str], ...]
CASES: list[tuple[str, tuple[str, ...], Env]] = [
    ("echo", ("echo", "hello", "board"), (("B", "2"), ("A1", "x"), ("A", "1"))),
    ("echo", (), ()),
    ("exit", ("exit", "5", "bad", "thing"), ()),
    ("exit", ("300",), ()),
    ("exit", ("x",), ()),
    ("counter", ("3", "10"), ()),
    ("counter", ("counter", "0", "10"), ()),
    ("counter", ("abc",), ()),
    ("forever", ("x",), ()),
    ("flood", ("100",), ()),
    ("flood", ("17",), ()),
    ("reboot", ("zz",), ()),
]


@dataclass
class Outcome:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    lines: list[str] = field(default_factory=list)


async def run(
    session: DeviceSession, task_id: str, app: str, argv: tuple[str, ...], env: Env
) -> Outcome:
    events = session.subscribe()
    try:
        await session.start_task(task_id, app, argv, env)
        outcome = Outcome()
        while outcome.exit_code is None:
            event = await events.get(30)
            if isinstance(event, TaskOutput) and event.task_id == task_id:
                if event.stream == "stdout":
                    outcome.stdout += event.data
                else:
                    outcome.stderr += event.data
                session.ack_output(event.task_id, event.stream, event.end)
            elif isinstance(event, TaskExited) and event.task_id == task_id:
                outcome.exit_code = event.exit_code
        return outcome
    finally:
        events.close()


def _opener(path: str) -> Any:
    return serial_opener(lambda: path)


@pytest.fixture(scope="module")
def targets() -> list[str]:
    available = [name for name, target in TARGETS.items() if not missing_tools(target)]
    if not available:
        pytest.skip("no QEMU or firmware toolchain: run `make system-deps`")
    return available


@pytest.fixture
async def sessions(targets: list[str], tmp_path: Path) -> AsyncIterator[dict[str, DeviceSession]]:
    """A session to an emulated device ("emulator") and one to a QEMU board per target."""
    boards = {f"conf-{t}": t for t in targets}
    async with (
        EmulatedFleet(
            tmp_path / "emu", [DeviceProfile(device_id="conf-emu")], control_socket=False
        ),
        QemuFleet(tmp_path / "qemu", boards) as fleet,
    ):
        links = {"emulator": str(tmp_path / "emu" / "conf-emu")}
        links.update({t: str(fleet.symlink(f"conf-{t}")) for t in targets})
        opened = {
            name: DeviceSession(_opener(path), label=name, config=BOARD_SESSION)
            for name, path in links.items()
        }
        try:
            for session in opened.values():
                session.start()
            await asyncio.gather(*(s.wait_up(30) for s in opened.values()))
            yield opened
        finally:
            for session in opened.values():
                await session.close()


async def test_same_argv_same_output_and_exit_code(sessions: dict[str, DeviceSession]) -> None:
    for number, (app, argv, env) in enumerate(CASES):
        outcomes = {
            name: await run(session, f"conf/{number}", app, argv, env)
            for name, session in sessions.items()
        }
        expected = outcomes.pop("emulator")
        for name, got in outcomes.items():
            assert got == expected, f"{name}: {app} {argv} {env}"


async def test_stop_ends_a_task_with_143_and_reboot_resets_the_board(
    sessions: dict[str, DeviceSession],
) -> None:
    for name, session in sessions.items():
        events = session.subscribe()

        async def exit_of(
            task_id: str, events: EventSubscription = events, session: DeviceSession = session
        ) -> TaskExited:
            # acknowledge output as it comes, as the gateway does once it is on disk: a device
            # whose window is full of unacknowledged output cannot report the exit
            while True:
                event = await events.get(30)
                if isinstance(event, TaskOutput):
                    session.ack_output(event.task_id, event.stream, event.end)
                elif isinstance(event, TaskExited) and event.task_id == task_id:
                    return event

        await session.start_task("conf/stop", "forever", ["20"], [])
        exited = asyncio.create_task(exit_of("conf/stop"))
        await session.stop_task("conf/stop", grace_s=2)
        assert (await exited).exit_code == 143, name
        events.close()
    for name, session in sessions.items():
        if name == "emulator":
            continue
        before = await session.wait_up(5)
        events = session.subscribe()
        await session.start_task("conf/reboot", "reboot", ["10"], [])
        while True:
            event = await events.get(30)
            if isinstance(event, Reconciled) and event.rebooted:
                break
        events.close()
        assert "conf/reboot" in event.lost, name
        assert (await session.wait_up(30)).boot_id != before.boot_id, name
