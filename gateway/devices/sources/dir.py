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
import time

from gateway.devices.found import DeviceSink, FoundDevice

log = logging.getLogger(__name__)

# How often the directories are re-scanned, seconds. It bounds how long a plugged-in device
# waits to be noticed by this source (udev, where it runs, reports at once).
SCAN_INTERVAL_S = 0.25
# A directory listing is reused while the directory's mtime is unchanged, once the listing was
# made this long after that mtime (so no change within the same timestamp tick is missed).
MTIME_TRUST_NS = 1_000_000_000
# Known links checked for dangling per scan, in turn: with more links, each is checked every
# len/DANGLING_CHECKS scans (1000 links: every 4 s). A removed link is seen at once, and a tty
# that vanishes under its link ends the device's connection at once (the tty reports it); the
# dangling check only tells the device manager the device is gone for good. 64 stats per scan
# instead of 256: at 1000 devices ~1000 stat calls a second were 6% of the gateway's CPU.
DANGLING_CHECKS = 64


class DirSource:
    name = "dir"

    def __init__(self, dirs: tuple[str, ...], scan_interval_s: float = SCAN_INTERVAL_S) -> None:
        self.dirs = dirs
        self.scan_interval_s = scan_interval_s
        self.ready = asyncio.Event()
        self._present: set[str] = set()
        self._unlistable: set[str] = set()
        # directory -> (its mtime when listed, its link paths): re-listed only on a change.
        self._listing: dict[str, tuple[int, list[str]]] = {}
        self._cursor = 0  # where the next scan's dangling checks start

    def _links(self, directory: str) -> list[str]:
        """The directory's link paths, sorted; listed again only when the directory changed."""
        stamp = os.stat(directory).st_mtime_ns
        cached = self._listing.get(directory)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        paths = [
            os.path.join(directory, name)
            for name in sorted(os.listdir(directory))
            if not name.startswith(".")  # control sockets, links being replaced and the like
        ]
        # Directory times are coarse (a clock tick): a change in the same tick as the listing
        # would keep the stamp. Trust a listing only when made well after the stamp.
        if time.time_ns() - stamp > MTIME_TRUST_NS:
            self._listing[directory] = (stamp, paths)
        else:
            self._listing.pop(directory, None)
        return paths

    def scan(self, sink: DeviceSink) -> None:
        paths: list[str] = []
        for directory in self.dirs:
            try:
                paths += self._links(directory)
            except FileNotFoundError:
                self._listing.pop(directory, None)
                continue
            except OSError as exc:
                self._listing.pop(directory, None)
                if directory not in self._unlistable:
                    self._unlistable.add(directory)
                    log.warning("cannot list device directory %s: %s", directory, exc)
                continue
            self._unlistable.discard(directory)
        # New links are checked at once; known ones for dangling, DANGLING_CHECKS per scan in
        # turn (a stat through the link costs microseconds, times a thousand, four times a second).
        count = len(paths)
        start = self._cursor % count if count else 0
        self._cursor = start + DANGLING_CHECKS
        seen: set[str] = set()
        for index, path in enumerate(paths):
            known = path in self._present
            if known and count > DANGLING_CHECKS and (index - start) % count >= DANGLING_CHECKS:
                seen.add(path)
                continue
            try:
                os.stat(path)
            except (OSError, ValueError):
                continue  # a dangling link: its tty is gone
            seen.add(path)
            if not known:
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
