"""Finds devices and keeps one supervised session per device path.

Sources: explicit ports from config, and directories of links (`/dev/wirelet`, the emulator's
DIR, `/dev/serial/by-id`) that are re-scanned so that a device plugged in later is picked up. A
link name is stable per device (udev and the emulator name it from the device's serial), so a
session keyed by link path survives a re-plug under a new tty: it re-resolves the link on every
reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gateway.link.session import DeviceSession, SessionConfig
from gateway.transport.serial import SerialSettings, serial_opener

log = logging.getLogger(__name__)

# How often directories of links are re-scanned for new devices.
SCAN_INTERVAL_S = 0.5

SessionStarted = Callable[[str, DeviceSession], None]


class DeviceManager:
    """Owns every DeviceSession; calls `on_session(path, session)` for each new device path."""

    def __init__(
        self,
        *,
        ports: tuple[str, ...],
        dirs: tuple[str, ...],
        settings: SerialSettings,
        session_config: SessionConfig,
        on_session: SessionStarted,
        scan_interval_s: float = SCAN_INTERVAL_S,
    ) -> None:
        self.ports = ports
        self.dirs = dirs
        self.settings = settings
        self.session_config = session_config
        self.on_session = on_session
        self.scan_interval_s = scan_interval_s
        self.sessions: dict[str, DeviceSession] = {}

    def _add(self, path: str) -> None:
        if path in self.sessions:
            return

        def resolve() -> str:
            # Follow the link afresh each time: a re-plugged device has a new tty behind it.
            return os.path.realpath(path)

        label = Path(path).name
        session = DeviceSession(
            serial_opener(resolve, self.settings), label=label, config=self.session_config
        )
        self.sessions[path] = session
        log.info("device path %s found", path)
        self.on_session(path, session)

    def scan(self) -> None:
        for port in self.ports:
            self._add(port)
        for directory in self.dirs:
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot list device directory %s: %s", directory, exc)
                continue
            for name in names:
                if name.startswith("."):
                    continue  # control sockets and the like
                self._add(os.path.join(directory, name))

    async def run(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(self.scan_interval_s)

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close()
