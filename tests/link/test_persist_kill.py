"""SIGKILL the output path at many points of a pod's output (no Kubernetes needed): the log gets
every byte the device printed exactly once and in order, because nothing is acknowledged to the
device before it is on disk (in the log, or in the spool while the pod is not known yet)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.logs import LogConfig, LogStore, read_logs
from hil.emulator.apps import flood_bytes
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from tests.link.helpers import FAST_LINK

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

UID = "5e1f0c2a-7d3b-4e8f-9a6c-1b2d3e4f5a6b"
TOTAL = 256 * 1024
KILLS = 12
WAIT = 60.0


async def stopped() -> bool:
    return False


async def test_sigkill_at_many_points_loses_and_repeats_no_byte(tmp_path: Path) -> None:
    devices, root = tmp_path / "devices", tmp_path / "pods"
    devices.mkdir()
    store = LogStore(LogConfig(root=root, fsync=False))  # for reading only
    log_file = store.container_dir("default", "flood", UID, "main") / "0.log"
    # ~46 KB/s: the output spans every restart of the harness.
    profile = DeviceProfile(device_id="emu-0000", baud=460_800)
    rng = random.Random(20261201)

    def size() -> int:
        try:
            return log_file.stat().st_size
        except FileNotFoundError:
            return 0

    async def until(condition: Callable[[], bool]) -> None:
        """Poll a file (no event to wait on), bounded."""
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    async def harness(*, resume: bool) -> asyncio.subprocess.Process:
        args = [str(devices / "emu-0000"), str(root), UID, str(TOTAL)]
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.link.persist_harness",
            *args,
            *(["--resume"] if resume else []),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(tmp_path / "harness.log").open("ab"),
        )

    async with EmulatedFleet(devices, [profile], link_config=FAST_LINK, control_socket=False):
        process = await harness(resume=False)
        try:
            await until(lambda: size() > 1024)  # the task started
            for point in range(KILLS):
                if point % 2:
                    target = size() + 4096
                    await until(lambda t=target: size() >= t)  # type: ignore[misc]
                else:  # at a random moment: before the device is found, mid-handshake, ...
                    await asyncio.sleep(rng.uniform(0.0, 0.8))
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
                process = await harness(resume=True)

            async def log() -> bytes:
                source = store.source(
                    "default", "flood", UID, "main", restart=0, is_running=stopped
                )
                return b"".join([chunk async for chunk in read_logs(source)])

            async with asyncio.timeout(WAIT):
                while len(got := await log()) < TOTAL:  # noqa: ASYNC110 - a file, no event
                    await asyncio.sleep(0.05)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    expected = flood_bytes(0, TOTAL)
    if got != expected:
        pairs = zip(got, expected, strict=False)
        first = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(got), TOTAL))
        raise AssertionError(
            f"{len(got)} bytes, expected {TOTAL}; first difference at {first}: "
            f"{got[first - 40 : first + 40]!r} expected {expected[first - 40 : first + 40]!r}"
        )
    with contextlib.suppress(FileNotFoundError):
        assert os.listdir(root / ".spool") == [], "spooled output was not moved into the log"
