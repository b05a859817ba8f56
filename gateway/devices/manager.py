"""Finds devices and keeps one supervised session per device.

Sources (explicit ports from config, directories of links, udev) report devices by a stable key
(see `found.py`); the manager keeps one `DevicePort` and one `DeviceSession` per key for the
gateway's whole life. A device that is unplugged makes its session's link drop (the open fd sees
the hang-up), its node goes NotReady, and its port waits for it; when any source reports the key
again, even under a new tty name, the same session reconnects at once, handshakes, reconciles
its tasks, and the same node is Ready again.

Opening problems a person must fix (permission denied, port busy) are logged once per new
problem with the fix, and handed to `on_problem` (the gateway records a Kubernetes Event).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gateway.devices.found import DeviceSink, FoundDevice
from gateway.devices.port import ABSENT_WAIT_S, DeviceOpenProblem, DevicePort
from gateway.devices.sources import DirSource, PortsSource, UdevSource, UsbSource
from gateway.devices.sources.dir import SCAN_INTERVAL_S
from gateway.devices.sources.usb import UsbSelector
from gateway.link.session import DeviceSession, SessionConfig
from gateway.tasks import TaskSet
from gateway.transport.serial import SerialSettings

log = logging.getLogger(__name__)

SessionStarted = Callable[[str, DeviceSession], None]
# (device key, event reason or "" once resolved, message)
ProblemReported = Callable[[str, str, str], None]


class DeviceSource(Protocol):
    name: str
    ready: asyncio.Event

    async def run(self, sink: DeviceSink) -> None: ...


class DeviceManager(DeviceSink):
    """Owns every DeviceSession; calls `on_session(key, session)` for each new device."""

    def __init__(
        self,
        *,
        ports: tuple[str, ...],
        dirs: tuple[str, ...],
        settings: SerialSettings,
        session_config: SessionConfig,
        on_session: SessionStarted,
        udev: bool = False,
        usb: tuple[UsbSelector, ...] = (),
        on_problem: ProblemReported | None = None,
        scan_interval_s: float = SCAN_INTERVAL_S,
        sources: list[DeviceSource] | None = None,
    ) -> None:
        self.settings = settings
        self.session_config = session_config
        self.on_session = on_session
        self.on_problem = on_problem
        if sources is None:
            sources = []
            if ports:
                sources.append(PortsSource(ports))
            if dirs:
                sources.append(DirSource(dirs, scan_interval_s))
            if udev:
                sources.append(UdevSource())
            if usb:
                sources.append(UsbSource(usb))
        self.sources = sources
        self.ports: dict[str, DevicePort] = {}
        self.sessions: dict[str, DeviceSession] = {}
        self.problems: dict[str, str] = {}  # key -> the problem reported last

    # --- DeviceSink ---------------------------------------------------------------------------

    def device_added(self, found: FoundDevice) -> None:
        port = self.ports.get(found.key)
        if port is not None:
            if not port.present.is_set():
                log.info("device %s is back at %s (%s)", found.key, found.path, found.source)
            port.appeared(found.path, follow_link=found.follow_link)
            return
        port = DevicePort(
            found.key,
            found.path,
            self.settings,
            follow_link=found.follow_link,
            transport=found.transport,
            absent_wait_s=ABSENT_WAIT_S,
            open_timeout_s=self.session_config.open_timeout,
            on_result=lambda problem: self._opened(found.key, problem),
        )
        self.ports[found.key] = port
        label = found.details.get("serial") or Path(found.key).name
        # The session's bound on one open covers waiting for an unplugged device as well.
        config = dataclasses.replace(
            self.session_config, open_timeout=self.session_config.open_timeout + ABSENT_WAIT_S
        )
        session = DeviceSession(port.open, label=label, config=config)
        self.sessions[found.key] = session
        log.info("device %s found at %s (%s)", found.key, found.path, found.source)
        self.on_session(found.key, session)

    def device_removed(self, key: str, source: str) -> None:
        port = self.ports.get(key)
        if port is not None and port.present.is_set():
            log.info("device %s removed (%s)", key, source)
            port.vanished()

    def device_ignored(self, where: str, why: str) -> None:
        log.debug("not serving %s: %s", where, why)

    def _opened(self, key: str, problem: DeviceOpenProblem | None) -> None:
        message = str(problem) if problem is not None else ""
        if self.problems.get(key, "") == message:
            return  # reported already; the session retries quietly with back-off
        if problem is None:
            log.info("device %s: opened again, the earlier problem is resolved", key)
            self.problems.pop(key, None)
            if self.on_problem is not None:
                self.on_problem(key, "", "")
            return
        self.problems[key] = message
        log.error("device %s: %s", key, message)
        if self.on_problem is not None:
            self.on_problem(key, problem.reason, message)

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every source until cancelled."""
        tasks = TaskSet("device source")
        running = [tasks.spawn(source.run(self), source.name) for source in self.sources]
        try:
            await asyncio.gather(*running)
            await asyncio.Event().wait()  # sources that finished (ports) keep their devices
        finally:
            await tasks.stop()

    async def wait_ready(self) -> None:
        """Until every source has reported what is present at start (coldplug)."""
        await asyncio.gather(*(source.ready.wait() for source in self.sources))

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close()
