"""The gateway's USB path under a umockdev testbed; run by test_usb_umockdev.py, not by pytest.

    umockdev-wrapper /usr/bin/python3 -m hil.emulator.usb_gadget --pty PTY [--tagged] -- \\
        VENV_PYTHON -m tests.usb.usb_probe [--udev]

Runs the real `DeviceManager` with a `UsbSource` (sysfs discovery) or, with --udev, the
`UdevSource` (uevents), and `UsbTransport` (pyusb -> libusb -> usbdevfs, answered by the
gadget): handshake, a 1 MB flood checked byte for byte,
then asks the driver to unplug and plug the device and reports what the session saw. Every step
is one JSON line on stdout; "unplug-me" / "plug-me" are requests to the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from firmware_protocol import LinkConfig
from gateway.devices.manager import DeviceManager
from gateway.devices.sources.udev import UdevSource
from gateway.devices.sources.usb import UsbSelector, UsbSource
from gateway.link.events import Reconciled, SessionStateChanged, TaskExited, TaskOutput
from gateway.link.retry import RetryPolicy
from gateway.link.session import DeviceSession, EventSubscription, SessionConfig
from gateway.link.state import SessionState
from gateway.transport.serial import SerialSettings
from hil.emulator.apps import flood_bytes

FLOOD = 1 << 20


def emit(**event: Any) -> None:
    # One write(2) per line: the gadget and its command share this stdout pipe.
    os.write(sys.stdout.fileno(), (json.dumps(event) + "\n").encode())


async def flood(session: DeviceSession, events: EventSubscription) -> None:
    received = bytearray()
    repeats = gaps = 0
    started = time.monotonic()
    await session.start_task("flood-1", "flood", [str(FLOOD)])
    while True:
        event = await events.get(timeout_s=60)
        if isinstance(event, TaskOutput) and event.task_id == "flood-1":
            end = event.offset + len(event.data)
            if event.offset > len(received):
                gaps += 1
            elif end > len(received):
                received += event.data[len(received) - event.offset :]
            else:
                repeats += 1
            session.ack_output(event.task_id, event.stream, end)
        elif isinstance(event, TaskExited) and event.task_id == "flood-1":
            break
    emit(
        event="flood",
        bytes=len(received),
        intact=bytes(received) == flood_bytes(0, FLOOD),
        gaps=gaps,
        repeats=repeats,
        seconds=round(time.monotonic() - started, 3),
    )


async def wait_for(
    session: DeviceSession, events: EventSubscription, wanted: type, **match: Any
) -> Any:
    while True:
        event = await events.get(timeout_s=30)
        if isinstance(event, TaskOutput):
            session.ack_output(event.task_id, event.stream, event.end)
        if isinstance(event, wanted) and all(getattr(event, k) == v for k, v in match.items()):
            return event


async def main() -> None:
    sessions: asyncio.Queue[DeviceSession] = asyncio.Queue()
    # --udev: found through udev (tagged, ff5701 interface); else by selector from sysfs.
    source: UdevSource | UsbSource = (
        UdevSource()
        if "--udev" in sys.argv
        else UsbSource([UsbSelector.parse("cafe:4001")], scan_interval_s=0.1)
    )
    config = SessionConfig(
        handshake_timeout=5.0,
        open_timeout=5.0,
        backoff=RetryPolicy(initial=0.05, maximum=0.5),
        link=LinkConfig(),
    )
    manager = DeviceManager(
        ports=(),
        dirs=(),
        settings=SerialSettings(),
        session_config=config,
        on_session=lambda _key, session: sessions.put_nowait(session),
        sources=[source],
    )
    runner = asyncio.create_task(manager.run())
    try:
        session = await asyncio.wait_for(sessions.get(), 30)
        events = session.subscribe()
        session.start()
        facts = await session.wait_up(30)
        key, port = next(iter(manager.ports.items()))
        emit(
            event="up",
            key=key,
            device_id=facts.device_id,
            transport=facts.transport,
            port=facts.port,
            apps=list(facts.apps),
        )
        await flood(session, events)
        await session.start_task("tick-1", "forever", ["50"])
        await wait_for(session, events, TaskOutput, task_id="tick-1")
        emit(event="unplug-me")
        down = await wait_for(session, events, SessionStateChanged, old=SessionState.UP)
        emit(event="down", state=down.new.value, reason=down.reason, present=port.present.is_set())
        emit(event="plug-me")
        reconciled = await wait_for(session, events, Reconciled)
        assert session.facts is not None
        emit(
            event="reconciled",
            surviving=list(reconciled.surviving),
            lost=list(reconciled.lost),
            rebooted=reconciled.rebooted,
            device_id=session.facts.device_id,
            port=session.facts.port,
            sessions=len(manager.sessions),
        )
        await wait_for(session, events, TaskOutput, task_id="tick-1")
        emit(event="output-after-replug")
        await session.stop_task("tick-1", grace_s=1.0)
        emit(event="done")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await manager.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="probe %(name)s: %(message)s")
    try:
        asyncio.run(main())
    except Exception as exc:
        emit(event="failed", error=repr(exc))
        sys.exit(1)
