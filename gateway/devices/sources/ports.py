"""Explicit ports from config: always wanted, never removed (the session retries opening them)."""

from __future__ import annotations

import asyncio

from gateway.devices.found import DeviceSink, FoundDevice


class PortsSource:
    name = "ports"

    def __init__(self, ports: tuple[str, ...]) -> None:
        self.ports = ports
        self.ready = asyncio.Event()

    def scan(self, sink: DeviceSink) -> None:
        for port in self.ports:
            sink.device_added(FoundDevice(port, port, self.name, follow_link=True))

    async def run(self, sink: DeviceSink) -> None:
        self.scan(sink)
        self.ready.set()
