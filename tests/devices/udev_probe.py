"""Runs the gateway's `UdevSource` and prints what it reports, one JSON object per line.

Started by `umockdev_driver.py` inside a umockdev testbed (LD_PRELOAD and UMOCKDEV_DIR set), so
libudev, and through it pyudev, sees the testbed's devices and uevents instead of the host's.
Exits once it is told about the sentinel device (the driver's last event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from gateway.devices.found import FoundDevice
from gateway.devices.sources.udev import UdevSource

SENTINEL = "wirelet-sentinel"


class Printer:
    def __init__(self) -> None:
        self.done = asyncio.Event()

    def _print(self, **fields: object) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    def device_added(self, found: FoundDevice) -> None:
        self._print(event="added", key=found.key, path=found.path, follow=found.follow_link)

    def device_removed(self, key: str, source: str) -> None:
        self._print(event="removed", key=key)

    def device_ignored(self, where: str, why: str) -> None:
        self._print(event="ignored", where=where, why=why)
        if where.endswith(SENTINEL):
            self.done.set()


async def main() -> None:
    printer = Printer()
    source = UdevSource()
    task = asyncio.create_task(source.run(printer), name="udev source")
    ready = asyncio.create_task(source.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # the source gave up (no monitor): say so and stop
        ready.cancel()
        printer._print(event="failed")
        return
    printer._print(event="ready")
    async with asyncio.timeout(30):
        await printer.done.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(main())
