"""Serial tty transport (USB-CDC, UART adapters, and pseudo-terminals in tests)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import serial
import serial_asyncio_fast

from gateway.errors import PortBusy, PortNotFound, TransportClosed, TransportError
from gateway.transport.base import Transport, TransportOpener

_log = logging.getLogger(__name__)

# Stop reading from the tty (and let the kernel buffer / device flow control push back) when
# this many received bytes wait for the link layer to consume them.
READ_BUFFER_HIGH_WATER = 256 * 1024


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Per-device port settings.

    `dtr`/`rts`: None leaves the line as the driver sets it; True/False asserts/deasserts it before
    the port opens (many boards reset when DTR toggles, so the policy is per device). Ports
    without modem lines (ptys) ignore this quietly.
    """

    baudrate: int = 115200
    dtr: bool | None = None
    rts: bool | None = None
    exclusive: bool = True


class _Receiver(asyncio.Protocol):
    """Bridges pyserial-asyncio-fast's callbacks into an awaitable byte queue."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._data_waiter: asyncio.Future[None] | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading_paused = False
        # While pump() runs: received bytes go straight to its callback (no task wake-up per
        # read, at 1000 devices ~1000 a second), and its end (port gone, callback failed) here.
        self._sink: Callable[[bytes], None] | None = None
        self._sink_done: asyncio.Future[NoReturn] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            try:
                self._sink(data)
            except BaseException as exc:  # the pump's caller gets it, as from a read loop
                self._end_sink(exc)
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_BUFFER_HIGH_WATER and self.transport and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self._end_sink(TransportClosed(f"port closed: {exc or 'closed'}"))
        self._can_write.set()
        self._wake()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def _wake(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    def attach(self, sink: Callable[[bytes], None]) -> asyncio.Future[NoReturn]:
        """Deliver received bytes to `sink` from now on; the future fails with the reason it
        stopped (the port gone, or what `sink` raised)."""
        done: asyncio.Future[NoReturn] = asyncio.get_running_loop().create_future()
        if self.lost.done():
            done.set_exception(TransportClosed(f"port closed: {self.lost.result() or 'closed'}"))
            return done
        self._sink, self._sink_done = sink, done
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return done

    def detach(self) -> None:
        self._sink = self._sink_done = None

    def _end_sink(self, exc: BaseException) -> None:
        done = self._sink_done
        self.detach()
        if done is not None and not done.done():
            done.set_exception(exc)

    def take(self) -> bytes:
        """Every byte received and not yet read (b"" if none)."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        return data

    async def next_bytes(self) -> bytes:
        while not self.chunks:
            if self.lost.done():
                raise TransportClosed(f"port closed: {self.lost.result() or 'closed'}")
            self._data_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None
        data = self.take()
        if self._reading_paused and self.transport is not None and not self.lost.done():
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait_writable(self) -> None:
        await self._can_write.wait()


class _Serial(serial.Serial):  # type: ignore[misc]
    """pyserial's Serial whose non-blocking read never calls select(), and whose non-blocking
    write is one system call.

    pyserial's POSIX `read` select()s on the fd before reading even with timeout 0, and select()
    cannot take a descriptor >= FD_SETSIZE (1024): a gateway serving a few hundred devices has
    such descriptors, and every read then raised ValueError from the event loop's callback, in a
    busy loop. The event loop (epoll) has already reported the fd readable, so read it directly,
    with pyserial's semantics: nothing available is b"", a readable fd returning no data is a
    vanished device.
    """

    def read(self, size: int = 1) -> bytes:
        if self._timeout != 0 or not self.is_open:
            return super().read(size)  # type: ignore[no-any-return]
        try:
            data = os.read(self.fd, size)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return b""
            raise serial.SerialException(f"read failed: {exc}") from exc
        if not data:
            raise serial.SerialException(
                "device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)"
            )
        return data

    def write(self, data: bytes) -> int:
        """Non-blocking (write timeout 0, as the asyncio transport sets it): one os.write,
        which is all pyserial's own does then, less its per-call set-up (a heartbeat per
        device every few seconds goes through here). EAGAIN is BlockingIOError, which the
        asyncio transport buffers."""
        if self._write_timeout != 0 or not self.is_open:
            return super().write(data)  # type: ignore[no-any-return]
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            raise
        except InterruptedError:
            raise BlockingIOError(errno.EINTR, "interrupted") from None
        except OSError as exc:
            raise serial.SerialException(f"write failed: {exc}") from exc


def _open_serial(path: str, settings: SerialSettings) -> serial.Serial:
    """Blocking open (runs in an executor): the modem-line policy applies before the port opens."""
    port = _Serial()
    port.port = path
    port.baudrate = settings.baudrate
    port.exclusive = settings.exclusive
    if settings.dtr is not None:
        port.dtr = settings.dtr
    if settings.rts is not None:
        port.rts = settings.rts
    port.open()  # pyserial already ignores EINVAL/ENOTTY for modem lines on ptys
    with contextlib.suppress(OSError, serial.SerialException):
        # Bytes queued before we opened belong to nobody; drop them.
        port.reset_input_buffer()
    return port


class _AsyncSerial(serial_asyncio_fast.SerialTransport):
    """pyserial-asyncio-fast's transport, with its writer removed once the write buffer drains.

    Its `_write_ready` writes what a partial write left and never unregisters the fd's writer:
    from then on every pass of the event loop calls it again on an empty buffer, which raises
    (AssertionError, logged per call) and keeps the loop spinning at 100% CPU until the port
    closes. A device that reads its UART slower than we write (an emulated AVR board, a board
    whose USB buffers are full) starts that. (home-assistant-libs/pyserial-asyncio-fast#36.)"""

    def _write_ready(self) -> None:
        if self._write_buffer:
            super()._write_ready()
        if not self._write_buffer:
            self._remove_writer()


def _classify_open_error(path: str, exc: Exception) -> TransportError:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or not os.path.exists(path):
        return PortNotFound(f"{path}: {exc}")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in str(exc):
        return PortBusy(f"{path}: {exc}")
    return TransportError(f"{path}: {exc}")


class SerialTransport(Transport):
    """A tty opened through pyserial-asyncio-fast. Use `await SerialTransport.open(path)`."""

    def __init__(self, path: str, aio: asyncio.Transport, receiver: _Receiver) -> None:
        self._path = path
        self._aio = aio
        self._rx = receiver

    @classmethod
    async def open(cls, path: str, settings: SerialSettings | None = None) -> SerialTransport:
        settings = settings or SerialSettings()
        loop = asyncio.get_running_loop()
        try:
            port = await loop.run_in_executor(None, _open_serial, path, settings)
        except (OSError, serial.SerialException, ValueError) as exc:
            raise _classify_open_error(path, exc) from exc
        receiver = _Receiver()
        aio = _AsyncSerial(loop, receiver, port)
        _log.debug("%s: opened at %d baud", path, settings.baudrate)
        return cls(path, aio, receiver)

    @property
    def description(self) -> str:
        return self._path

    @property
    def kind(self) -> str:
        return "serial"

    @property
    def is_open(self) -> bool:
        return not self._rx.lost.done() and not self._aio.is_closing()

    async def read(self) -> bytes:
        return await self._rx.next_bytes()

    async def pump(self, on_data: Callable[[bytes], None]) -> NoReturn:
        """`on_data` called from the receive callback itself (see `Transport.pump`)."""
        earlier = self._rx.take()
        if earlier:
            on_data(earlier)
        done = self._rx.attach(on_data)
        try:
            await done
        finally:
            self._rx.detach()
        raise AssertionError("unreachable: the future only ever fails")

    @property
    def ready_to_write(self) -> bool:
        return self._rx._can_write.is_set() and self.is_open

    def write_nowait(self, data: bytes) -> None:
        self._aio.write(data)

    async def write(self, data: bytes) -> None:
        if not self.is_open:
            raise TransportClosed(f"{self._path}: port closed")
        self._aio.write(data)
        await self._rx.wait_writable()
        if self._rx.lost.done():
            raise TransportClosed(f"{self._path}: port closed while writing")

    async def close(self) -> None:
        if not self._rx.lost.done() and not self._aio.is_closing():
            # abort, not close: close() would tcdrain(), which blocks forever if the device
            # stopped reading. Reliability is the link layer's job, not the tty's.
            self._aio.abort()
        # The library finishes closing in a background task; wait for it so nothing leaks.
        await asyncio.shield(self._rx.lost)


def serial_opener(
    resolve_path: Callable[[], str], settings: SerialSettings | None = None
) -> TransportOpener:
    """A `TransportOpener` that re-resolves the device's path on every (re)connect."""

    async def open_transport() -> Transport:
        return await SerialTransport.open(resolve_path(), settings)

    return open_transport
