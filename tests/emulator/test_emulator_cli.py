"""`python -m hil.emulator` in its own process, controlled with `ctl` from other processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from gateway.link.events import TaskExited
from tests.link.helpers import WAIT, next_matching, session_for


async def ctl(directory: Path, *args: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.emulator",
        "ctl",
        str(directory),
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    reply: dict[str, object] = json.loads(out)
    return reply


async def test_emulator_process_and_ctl(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.emulator",
        "--devices",
        "2",
        "--dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        lines = []
        async with asyncio.timeout(WAIT):
            while (line := (await proc.stdout.readline()).decode().strip()) != "ready":
                assert line, "emulator exited before it was ready"
                lines.append(line)
        assert [line.split()[0] for line in lines] == ["emu-0000", "emu-0001"]
        old_tty = os.readlink(tmp_path / "emu-0001")

        # A gateway session in this process talks to a device in the emulator process.
        async with session_for(tmp_path, "emu-0001") as session:
            facts = await session.wait_up(WAIT)
            assert facts.device_id == "emu-0001" and facts.port == old_tty
            sub = session.subscribe()
            await session.start_task("t", "exit", ["exit", "0"])
            await next_matching(sub, lambda e: isinstance(e, TaskExited))
            sub.close()

            reply = await ctl(tmp_path, "emu-0001", "fault", "--drop", "0.1", "--delay", "3")
            faults = reply["device"]["faults"]  # type: ignore[index]
            assert faults["drop"] == 0.1 and faults["delay_ms"] == 3.0

            await ctl(tmp_path, "emu-0001", "unplug")
            assert not (tmp_path / "emu-0001").exists()
            await ctl(tmp_path, "emu-0001", "replug")
            assert os.readlink(tmp_path / "emu-0001") != old_tty
            await ctl(tmp_path, "emu-0001", "fault", "--clear")
            listing = await ctl(tmp_path, "list")
            assert len(listing["devices"]) == 2  # type: ignore[arg-type]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            await proc.wait()
    assert proc.returncode == 0
    assert os.listdir(tmp_path) == []  # links and control socket cleaned up
