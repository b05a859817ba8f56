"""What every transport offers the link layer: an ordered, unframed byte pipe.

A transport knows nothing about frames or messages. Serial ttys, a raw USB bulk endpoint pair
and a TCP socket (for tests) all fit: `read()` returns whatever bytes have arrived, `write()`
queues bytes and waits while the device side is not keeping up, and a vanished port surfaces
as `TransportClosed` from `read()`/`write()` (like a pulled cable).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import NoReturn


class Transport(abc.ABC):
    """One open connection to one device. Not reusable after `close()`."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Human-readable endpoint, e.g. the tty path; used in logs and `wirelet devices`."""

    @property
    @abc.abstractmethod
    def kind(self) -> str:
        """Short transport kind for node labels: "serial", "usb", "tcp"."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """True until the port vanished or `close()` was called."""

    @abc.abstractmethod
    async def read(self) -> bytes:
        """Wait for and return at least one byte. Raises `TransportClosed` once the port is gone."""

    async def pump(self, on_data: Callable[[bytes], None]) -> NoReturn:
        """Hand every batch of received bytes to `on_data`, in order, until the port is gone
        (`TransportClosed`) or `on_data` raises (that exception). Transports that can call
        `on_data` from their own receive callback override this: no task wake-up per read."""
        while True:
            on_data(await self.read())

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Queue `data`, waiting while the outgoing buffer is above its high-water mark."""

    @property
    def ready_to_write(self) -> bool:
        """True if `write_nowait` may be called now: open, outgoing buffer below high water."""
        return False

    def write_nowait(self, data: bytes) -> None:
        """Queue `data` at once; only when `ready_to_write` (saves a task switch per write)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the port. Idempotent; pending reads raise `TransportClosed`."""


# Opens a fresh transport for one connection attempt. A session calls it again on every reconnect,
# so it may re-resolve where the device is now (a by-id symlink that points at a new tty, say).
TransportOpener = Callable[[], Awaitable[Transport]]
