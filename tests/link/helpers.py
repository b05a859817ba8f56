"""Shared setup for link and emulator tests: fast protocol timers, sessions over real ptys."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from firmware_protocol import LinkConfig
from gateway.link.events import SessionEvent, TaskOutput
from gateway.link.retry import RetryPolicy
from gateway.link.session import DeviceSession, EventSubscription, SessionConfig
from gateway.transport.serial import serial_opener

# Protocol timers shortened so reconnects and loss detection take milliseconds, not seconds.
# Tests never sleep for timing: they wait for events or states, with generous bounds.
FAST_LINK = LinkConfig(
    heartbeat_interval=0.1,
    link_lost_timeout=0.4,
    hello_interval=0.02,
    rto_initial=0.05,
    rto_min=0.01,
    rto_max=0.2,
)
FAST_SESSION = SessionConfig(
    request_timeout=5.0,
    handshake_timeout=1.0,
    open_timeout=5.0,
    stop_slack=5.0,
    backoff=RetryPolicy(initial=0.01, maximum=0.1),
    link=FAST_LINK,
    # These tests read output without persisting it: acknowledge on receipt. Tests of
    # persist-then-ack (test_integrity) turn holding on and call `ack_output`.
    hold_output=False,
)
# Upper bound for anything that should happen "soon"; only hit when something is broken.
WAIT = 10.0


def session_for(
    directory: Path, device_id: str, config: SessionConfig = FAST_SESSION
) -> DeviceSession:
    """A session that re-reads the by-id symlink at every (re)connect, as the gateway does."""
    link = directory / device_id
    return DeviceSession(
        serial_opener(lambda: os.path.realpath(link)), label=device_id, config=config
    )


async def next_matching(
    sub: EventSubscription, predicate: Callable[[SessionEvent], bool], timeout_s: float = WAIT
) -> SessionEvent:
    """Skip events until one matches (bounded by `timeout_s` per event)."""
    while True:
        event = await sub.get(timeout_s)
        if predicate(event):
            return event


# Persist-then-ack: TASK_OUTPUT is acknowledged only when the test says it is stored.
HOLDING_SESSION = dataclasses.replace(FAST_SESSION, hold_output=True)


async def leave_unacknowledged_output(directory: Path, task_id: str, total: int) -> None:
    """Start `flood total` as `task_id`, take one window of its output and go away without
    acknowledging any (a crash): the device keeps it, and its window is full of it."""
    async with session_for(directory, "emu-0000", HOLDING_SESSION) as first:
        await first.wait_up(WAIT)
        sub = first.subscribe()
        await first.start_task(task_id, "flood", ["flood", str(total)])
        for _ in range(FAST_LINK.window):
            await next_matching(sub, lambda e: isinstance(e, TaskOutput))
        sub.close()


async def receive_all_output(directory: Path, task_id: str, total: int) -> bytes:
    """A session that stores (here: keeps) and acknowledges output as it arrives, handshake or
    not, until `total` bytes of `task_id`'s stdout are in; each must follow the last."""
    async with session_for(directory, "emu-0000", HOLDING_SESSION) as session:
        sub = session.subscribe()

        async def persist() -> bytes:
            got = b""
            while len(got) < total:
                event = await sub.get(WAIT)
                if isinstance(event, TaskOutput) and event.task_id == task_id:
                    assert event.offset == len(got), "output was lost or repeated"
                    got += event.data
                    session.ack_output(task_id, event.stream, event.end)
            return got

        consumer = asyncio.ensure_future(persist())
        await session.wait_up(WAIT)
        got = await consumer
        sub.close()
        return got
