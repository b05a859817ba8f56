"""A real board speaks the protocol: handshake facts, and an app it offers runs to its exit.

The board runs the reference firmware (hil/qemu/firmware), the same that tests/qemu runs on
emulated boards. For an Arduino Mega 2560 (Debian ships its SDK: `make system-deps`):

    make -C hil/qemu/firmware avr-upload MONITOR_PORT=/dev/ttyACM0 DEVICE_ID=mega-01
    WIRELET_HIL_PORT=/dev/ttyACM0 .venv/bin/pytest -m hil

Other boards: port the HAL (hil/qemu/firmware/cortex-m/board.c is a bare-metal example, and
firmware_protocol/c/README.md has short HALs for common SDKs); see hil/qemu/README.md.
"""

from __future__ import annotations

import pytest

from gateway.link.events import TaskExited, TaskOutput
from gateway.link.session import DeviceSession
from gateway.transport.serial import serial_opener
from hil.emulator.apps import flood_bytes

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


async def test_board_handshake_and_a_task(board_port: str) -> None:
    async with DeviceSession(serial_opener(lambda: board_port), label="hil") as session:
        facts = await session.wait_up(timeout_s=10)
        assert facts.device_id
        assert facts.apps, "the board offers no apps"
        events = session.subscribe()
        app = "echo" if "echo" in facts.apps else facts.apps[0]
        await session.start_task("hil/0/0", app, ["hello", "board"], [])
        output = b""
        while True:
            event = await events.get(30)
            if isinstance(event, TaskOutput) and event.task_id == "hil/0/0":
                output += event.data
                session.ack_output(event.task_id, event.stream, event.end)
            if isinstance(event, TaskExited) and event.task_id == "hil/0/0":
                break
        events.close()
        if app == "echo":
            assert b"hello board" in output


async def _run(
    session: DeviceSession, task_id: str, app: str, argv: list[str]
) -> tuple[bytes, bytes, int]:
    events = session.subscribe()
    try:
        await session.start_task(task_id, app, argv, [("WIRELET", "1")])
        out = {"stdout": b"", "stderr": b""}
        while True:
            event = await events.get(30)
            if isinstance(event, TaskOutput) and event.task_id == task_id:
                out[event.stream] += event.data
                session.ack_output(event.task_id, event.stream, event.end)
            if isinstance(event, TaskExited) and event.task_id == task_id:
                return out["stdout"], out["stderr"], event.exit_code
    finally:
        events.close()


async def test_reference_firmware_apps(board_port: str) -> None:
    """The reference firmware (hil/qemu/firmware) gives the emulator's output and exit codes."""
    async with DeviceSession(serial_opener(lambda: board_port), label="hil") as session:
        facts = await session.wait_up(timeout_s=10)
        if facts.firmware_name != "wirelet-reference":
            pytest.skip(f"the board runs {facts.firmware_name!r}, not the reference firmware")
        assert await _run(session, "hil/1", "echo", ["echo", "hi"]) == (
            b"argv: echo hi\nWIRELET=1\n",
            b"",
            0,
        )
        assert await _run(session, "hil/2", "exit", ["3", "bye"]) == (b"", b"bye\n", 3)
        assert await _run(session, "hil/3", "counter", ["3", "10"]) == (b"1\n2\n3\n", b"", 0)
        assert await _run(session, "hil/4", "flood", ["5000"]) == (flood_bytes(0, 5000), b"", 0)
        assert await _run(session, "hil/5", "forever", ["x"]) == (
            b"",
            b"usage: forever [INTERVAL_MS]\n",
            64,
        )
