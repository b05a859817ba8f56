"""Directories of links (`/dev/wirelet`, `/dev/serial/by-id`, the emulator's DIR), re-scanned.

For hosts without udev (containers, CI) and for the emulator. A link's name is stable per device,
so the link path is the key: a link that appears is an add, a link that disappears (or dangles,
its tty gone) is a remove, and the same link re-appearing (pointing at a new tty) is the same
device back. Polling a few small directories is cheap and works on every filesystem, including
bind-mounted /dev in a container, where inotify often sees nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os

from gateway.devices.found import DeviceSink, FoundDevice

log = logging.getLogger(__name__)

# How often the directories are re-scanned, seconds. It bounds how long a plugged-in device
# waits to be noticed by this source (udev, where it runs, reports at once).
SCAN_INTERVAL_S = 0.25


class DirSource:
    name = "dir"

    def __init__(self, dirs: tuple[str, ...], scan_interval_s: float = SCAN_INTERVAL_S) -> None:
        self.dirs = dirs
        self.scan_interval_s = scan_interval_s
        self.ready = asyncio.Event()
        self._present: set[str] = set()
        self._unlistable: set[str] = set()

    def scan(self, sink: DeviceSink) -> None:
        seen: set[str] = set()
        for directory in self.dirs:
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            except OSError as exc:
                if directory not in self._unlistable:
                    self._unlistable.add(directory)
                    log.warning("cannot list device directory %s: %s", directory, exc)
                continue
            self._unlistable.discard(directory)
            for name in names:
                if name.startswith("."):
                    continue  # control sockets, links being replaced and the like
                path = os.path.join(directory, name)
                if not os.path.exists(path):
                    continue  # a dangling link: its tty is gone
                seen.add(path)
                if path not in self._present:
                    self._present.add(path)
                    sink.device_added(FoundDevice(path, path, self.name, follow_link=True))
        for path in sorted(self._present - seen):
            self._present.discard(path)
            sink.device_removed(path, self.name)

    async def run(self, sink: DeviceSink) -> None:
        while True:
            self.scan(sink)
            self.ready.set()
            await asyncio.sleep(self.scan_interval_s)
