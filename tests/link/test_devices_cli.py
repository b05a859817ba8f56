"""`wirelet devices --dir`: the table of devices, their facts and link stats."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from pathlib import Path

from gateway.cli import build_parser
from gateway.commands import devices
from gateway.link.events import TaskOutput
from hil.emulator.apps import flood_bytes
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import fleet_profiles
from tests.link.helpers import (
    FAST_LINK,
    FAST_SESSION,
    WAIT,
    leave_unacknowledged_output,
    next_matching,
    receive_all_output,
    session_for,
)


def run_cli(*argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(["devices", *argv])
    out = io.StringIO()
    code = devices.run(args, out)
    return code, out.getvalue()


async def test_devices_table_lists_every_device(tmp_path: Path) -> None:
    profiles = fleet_profiles(3)
    profiles[2] = dataclasses.replace(profiles[2], firmware_version="9.9.9", task_slots=7)
    async with EmulatedFleet(tmp_path, profiles, link_config=FAST_LINK) as fleet:
        fleet.device("emu-0001").hang()
        # The CLI runs its own event loop (asyncio.run): give it a thread, keep ours serving.
        code, table = await asyncio.to_thread(run_cli, "--dir", str(tmp_path), "--wait", "1")
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["DEVICE", "PORT", "STATE", "FIRMWARE", "PROTO"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "emu-0000" in rows and "emu-0002" in rows
    assert "9.9.9" in rows["emu-0002"] and " 7 " in rows["emu-0002"]
    assert " up " in rows["emu-0000"]
    hung = [line for line in lines[1:] if "emu-0001" in line]
    assert hung and " down " in hung[0] and "not up" in hung[0]
    assert code == 1  # not every device answered


async def test_devices_json(tmp_path: Path) -> None:
    async with EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK):
        code, text = await asyncio.to_thread(run_cli, "--dir", str(tmp_path), "--json")
    assert code == 0
    (report,) = json.loads(text)
    assert report["facts"]["device_id"] == "emu-0000"
    assert report["stats"]["state"] == "up"
    assert report["tasks"] == 0


async def test_a_probe_never_makes_a_device_discard_output(tmp_path: Path) -> None:
    """The probe stores no output, so it acknowledges none, even when the device's retained
    output fills the window in front of the probe's LIST_TASKS reply (the probe then reports
    no handshake): the next gateway still gets every byte."""
    total = 8192
    async with EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK):
        await leave_unacknowledged_output(tmp_path, "kept", total)
        await asyncio.to_thread(run_cli, "--dir", str(tmp_path), "--wait", "1")
        assert await receive_all_output(tmp_path, "kept", total) == flood_bytes(0, total)


async def test_probe_never_makes_a_device_discard_output(tmp_path: Path) -> None:
    """`wirelet devices` between two gateway sessions: the output the device kept for its
    gateway must all reach the next gateway, from the first byte, none acknowledged by the
    probe (it stores nothing)."""
    total = 20_000
    holding = dataclasses.replace(FAST_SESSION, hold_output=True)
    async with EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK) as fleet:
        device = fleet.device("emu-0000")
        # A gateway that received output but died before persisting (acknowledging) any.
        async with session_for(tmp_path, "emu-0000", holding) as first:
            await first.wait_up(WAIT)
            sub = first.subscribe()
            await first.start_task("flood", "flood", ["flood", str(total)])
            await next_matching(sub, lambda e: isinstance(e, TaskOutput))
            sub.close()
        unacked = device.figures().unacked_frames
        assert unacked > FAST_LINK.window, "output waits ahead of any task list reply"

        code, text = await asyncio.to_thread(
            run_cli, "--dir", str(tmp_path), "--json", "--wait", "5"
        )
        (report,) = json.loads(text)
        assert report["facts"] and report["facts"]["device_id"] == "emu-0000", report
        assert report["tasks"] is None and "LIST_TASKS" in report["error"], report
        assert code == 1
        assert device.figures().unacked_frames >= unacked, "the probe acknowledged nothing"

        # The next gateway gets every byte, in order, from offset 0.
        second = session_for(tmp_path, "emu-0000")
        sub = second.subscribe()
        async with second:
            out = bytearray()
            while len(out) < total:
                event = await next_matching(
                    sub, lambda e: isinstance(e, TaskOutput) and e.task_id == "flood"
                )
                assert isinstance(event, TaskOutput)
                assert event.offset == len(out), "no byte may be missing"
                out += event.data
        sub.close()
    assert bytes(out) == flood_bytes(0, total)


async def test_devices_names_a_protocol_version_mismatch(tmp_path: Path) -> None:
    """A device that speaks only a protocol version this gateway does not: the row says so
    (the versions on each side), not just that it did not come up."""
    profiles = fleet_profiles(1)
    profiles[0] = dataclasses.replace(profiles[0], protocol_versions=(99,))
    async with EmulatedFleet(tmp_path, profiles, link_config=FAST_LINK):
        code, table = await asyncio.to_thread(run_cli, "--dir", str(tmp_path), "--wait", "3")
    assert code == 1
    row = table.splitlines()[1]
    assert "[99]" in row, table
