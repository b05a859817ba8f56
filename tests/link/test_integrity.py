"""Every byte of a task's output arrives exactly once and in order, even over a bad line."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

import pytest

from gateway.link.events import TaskExited, TaskOutput
from gateway.link.state import SessionState
from hil.emulator.apps import flood_bytes
from hil.emulator.faults import FaultSettings
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import fleet_profiles
from tests.link.helpers import (
    FAST_LINK,
    FAST_SESSION,
    HOLDING_SESSION,
    WAIT,
    leave_unacknowledged_output,
    receive_all_output,
    session_for,
)

FLOOD = 1024 * 1024
# At a 1e-3 byte error rate about 40% of 512-byte frames arrive corrupted; smaller frames, a
# wider window and a low retransmit floor keep the 1 MB transfer to a few seconds on a pty.
LOSSY_LINK = dataclasses.replace(FAST_LINK, max_frame=256, window=8, rto_min=0.002)
LOSSY_SESSION = dataclasses.replace(FAST_SESSION, link=LOSSY_LINK, hold_output=True)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(FaultSettings(), id="clean"),
        pytest.param(
            FaultSettings(corrupt=1e-3, drop=0.05, duplicate=0.05),
            id="bad-line",
            marks=pytest.mark.slow,
        ),
    ],
)
async def test_flood_arrives_exactly_once_in_order(tmp_path: Path, faults: FaultSettings) -> None:
    async with (
        EmulatedFleet(tmp_path, fleet_profiles(1), link_config=LOSSY_LINK, seed=7) as fleet,
        session_for(tmp_path, "emu-0000", LOSSY_SESSION) as session,
    ):
        await session.wait_up(WAIT)
        fleet.device("emu-0000").set_faults(faults)  # after the handshake: both directions
        sub = session.subscribe()
        await session.start_task("flood", "flood", ["flood", str(FLOOD)])
        received = hashlib.sha256()
        position = 0
        while True:
            event = await sub.get(WAIT)
            if isinstance(event, TaskOutput) and event.task_id == "flood":
                assert event.offset == position, "a gap or a repeat reached the consumer"
                # Check content as it streams, so a failure names the first bad offset.
                assert event.data == flood_bytes(position, len(event.data)), position
                received.update(event.data)
                position += len(event.data)
                session.ack_output("flood", event.stream, event.end)
            elif isinstance(event, TaskExited) and event.task_id == "flood":
                break
        sub.close()
        assert position == FLOOD
        assert event.exit_code == 0 and event.stdout_end == FLOOD
        assert received.digest() == hashlib.sha256(flood_bytes(0, FLOOD)).digest()
        assert session.unpersisted_bytes() == 0
        if faults.active:
            device = fleet.device("emu-0000").figures()
            assert device.dropped_frames > 0 and device.corrupted_bytes > 0
            assert session.stats.retransmits > 0 or device.retransmits > 0


async def test_output_not_persisted_before_a_crash_comes_again(tmp_path: Path) -> None:
    """Persist-then-ack: a gateway that received output but died before writing it (never
    called `ack_output`) leaves it on the device; the next gateway session gets it again."""
    held = dataclasses.replace(FAST_SESSION, hold_output=True)
    async with EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK) as fleet:
        async with session_for(tmp_path, "emu-0000", held) as first:
            await first.wait_up(WAIT)
            sub = first.subscribe()
            await first.start_task("t", "counter", ["counter", "3", "1"])
            got = b""
            while got != b"1\n2\n3\n":
                event = await sub.get(WAIT)
                if isinstance(event, TaskOutput):
                    got += event.data
            sub.close()
        # The first gateway is gone without acknowledging: the device kept the output.
        assert fleet.device("emu-0000").figures().unacked_frames > 0
        async with session_for(tmp_path, "emu-0000", held) as second:
            sub = second.subscribe()

            async def persist() -> bytes:
                # As the gateway's consumer does: store (here: keep) and acknowledge output as
                # it arrives, handshake or not. The device re-sends it before it can answer the
                # handshake's LIST_TASKS, and nothing acknowledges it but the consumer.
                again = b""
                while True:
                    event = await sub.get(WAIT)
                    if isinstance(event, TaskOutput) and event.task_id == "t":
                        assert event.offset == len(again)
                        again += event.data
                        second.ack_output("t", event.stream, event.end)
                    elif isinstance(event, TaskExited) and event.task_id == "t":
                        return again

            consumer = asyncio.ensure_future(persist())
            await second.wait_up(WAIT)
            assert await consumer == b"1\n2\n3\n"
            sub.close()


async def test_output_stays_on_the_device_while_the_consumer_cannot_persist_it(
    tmp_path: Path,
) -> None:
    """A consumer that cannot persist (a stuck disk) holds the device's output however long it
    takes, even when the held output fills the window in front of the handshake's LIST_TASKS
    reply: the session then fails its handshake (back-pressure) but never acknowledges output
    early, so the device still has every byte for a consumer that can persist it."""
    total = 8192  # several windows of frames
    async with EmulatedFleet(tmp_path, fleet_profiles(1), link_config=FAST_LINK):
        await leave_unacknowledged_output(tmp_path, "f", total)
        # The next gateway's writer is stuck: it never acknowledges, and the re-sent window
        # stands in front of the LIST_TASKS reply.
        async with session_for(tmp_path, "emu-0000", HOLDING_SESSION) as stuck:
            state = await stuck.wait_state(SessionState.UP, SessionState.DOWN, timeout_s=WAIT)
            assert state is SessionState.DOWN, "output was released to let the handshake through"
            assert "no handshake" in str(stuck.last_error)
        assert await receive_all_output(tmp_path, "f", total) == flood_bytes(0, total)
