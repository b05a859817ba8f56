"""One transport's I/O for a session: a reader, a writer and the protocol link's timer.

A `Connection` is used once: the session makes a new one for every transport it opens and
closes it when that transport ends. The protocol `Link` outlives it (the session keeps one for
its whole life, so a device that comes back resumes where it left off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import firmware_protocol as wire
from firmware_protocol.wakeup import Wakeup
from gateway.link.events import SessionStats
from gateway.transport.base import Transport

# Byte dumps are logged at this level, below DEBUG, so debug logs stay readable.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")


class Connection:
    """Pumps bytes between `transport` and `link`; hands every batch of link events to
    `on_events`. `reader` and `writer` end with the transport's error (or never)."""

    def __init__(
        self,
        link: wire.Link,
        transport: Transport,
        *,
        on_events: Callable[[list[wire.Event]], None],
        stats: SessionStats,
        log: logging.LoggerAdapter[logging.Logger],
        label: str,
    ) -> None:
        self.transport = transport
        self._link = link
        self._on_events = on_events
        self._stats = stats
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._tx_wakeup = asyncio.Event()
        self._timer = Wakeup(self._loop, self._on_timer)
        self._closed = False
        self.reader = asyncio.create_task(self._read_loop(), name=f"{label}:read")
        self.writer = asyncio.create_task(self._write_loop(), name=f"{label}:write")

    async def close(self) -> None:
        """Stop the timer, the reader and the writer (the owner closes the transport)."""
        self._closed = True
        self._timer.cancel()
        for task in (self.reader, self.writer):
            task.cancel()
        await asyncio.gather(self.reader, self.writer, return_exceptions=True)

    def wake_writer(self) -> None:
        """The link has something to send (or an ack to give): the writer sends it."""
        self._tx_wakeup.set()

    def arm_timer(self) -> None:
        """Wake up at the link's next deadline (retransmit, heartbeat, ...)."""
        if not self._closed:
            self._timer.arm(self._link.next_deadline())

    def _on_timer(self) -> None:
        if self._closed:
            return
        now = self._loop.time()
        deadline = self._link.next_deadline()
        if deadline is not None and now < deadline:
            # Armed for a deadline that moved later since (the device's PING, heard first,
            # puts our own off): nothing is due, only the wake-up to move. With 1000 devices
            # that is most wake-ups.
            self._timer.arm(deadline)
            return
        self._on_events(self._link.on_timer(now))
        if self._link.has_output:
            self._transmit()
        self.arm_timer()

    async def _read_loop(self) -> None:
        await self.transport.pump(self._on_data)

    def _on_data(self, data: bytes) -> None:
        """Received bytes, called by the transport (from its receive callback, for a tty)."""
        if self._closed:
            return
        self._stats.bytes_in += len(data)
        if self._log.isEnabledFor(TRACE):
            self._log.log(TRACE, "rx %s", data.hex(" "))
        self._on_events(self._link.receive_data(data, self._loop.time()))
        if self._link.has_output:  # a PONG, say, needs no answer
            self._transmit()
        self.arm_timer()

    async def _write_loop(self) -> None:
        while True:
            await self._tx_wakeup.wait()
            self._tx_wakeup.clear()
            data = self._link.data_to_send()
            if data:
                self._count_out(data)
                await self.transport.write(data)

    def _transmit(self) -> None:
        """Send what the link has now if the transport takes it without waiting (heartbeats,
        acks: no writer task switch), else leave it to the write loop. Either way in order:
        the write loop hands what it drains to the transport before it waits."""
        if self._closed or self._tx_wakeup.is_set() or not self.transport.ready_to_write:
            self._tx_wakeup.set()
            return
        data = self._link.data_to_send()
        if data:
            self._count_out(data)
            self.transport.write_nowait(data)

    def _count_out(self, data: bytes) -> None:
        if self._log.isEnabledFor(TRACE):
            self._log.log(TRACE, "tx %s", data.hex(" "))
        self._stats.bytes_out += len(data)
