"""Raw USB transport: the wirelet byte stream on one bulk IN + one bulk OUT endpoint.

Built on pyusb with its libusb-1.0 backend. pyusb's calls are synchronous, so each open
transport has two small threads: a reader that keeps one bulk IN transfer posted (with a short
timeout so it notices `close()`), and a writer that drains an outgoing queue in bulk OUT
transfers. Both hand results to the event loop with `call_soon_threadsafe`; the event loop never
blocks on USB. (The `libusb1` binding's asynchronous transfers would save the two threads, but
need libusb's event handling integrated into asyncio through its pollfd notifiers, which
libusb itself discourages on Linux; two threads per device is simpler and the throughput is
bound by the device, not by us.)

The binding is in PROTOCOL.md, "USB binding": the interface is found by class/subclass/protocol
(`WIRELET_INTERFACE`), the COBS frame stream is cut into transfers without regard to frame
boundaries, and the device id comes from the handshake, never from the bus address.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import ctypes.util
import errno
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import PortBusy, PortNotFound, TransportClosed, TransportError
from gateway.transport.base import Transport, TransportOpener

_log = logging.getLogger(__name__)

# bInterfaceClass / bInterfaceSubClass / bInterfaceProtocol of a wirelet interface (PROTOCOL.md).
WIRELET_INTERFACE = (0xFF, 0x57, 0x01)
# One bulk IN transfer asks for this much; a multiple of every bulk wMaxPacketSize (64, 512, 1024).
READ_SIZE = 16384
# The reader's IN transfer times out this often to notice close() (then it is posted again).
READ_POLL_MS = 200
# Largest bulk OUT transfer; queued writes are joined up to this.
WRITE_CHUNK = 16384
# A bulk OUT transfer the device does not take within this is dropped (the link retransmits).
WRITE_TIMEOUT_MS = 2000
# write() waits while this much is queued and not yet on the bus.
WRITE_HIGH_WATER = 64 * 1024
# The reader stops posting IN transfers while this much waits for the link layer.
READ_HIGH_WATER = 256 * 1024
LIBUSB_SONAME = "libusb-1.0.so.0"

_NODE = re.compile(r"^/dev/bus/usb/(\d{1,3})/(\d{1,3})$")
# errno values (pyusb maps libusb's errors onto them) that mean the device is gone.
_GONE = {errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN}


@dataclass(frozen=True, slots=True)
class UsbAddress:
    """Where a USB device is on the bus now (changes on every re-plug)."""

    bus: int
    address: int

    @property
    def node(self) -> str:
        return f"/dev/bus/usb/{self.bus:03d}/{self.address:03d}"


def parse_node(path: str) -> UsbAddress:
    """`/dev/bus/usb/BBB/DDD` -> bus and address; anything else is a clear error."""
    match = _NODE.match(path)
    if match is None:
        raise PortNotFound(f"{path}: not a USB device node (expected /dev/bus/usb/BBB/DDD)")
    return UsbAddress(int(match.group(1)), int(match.group(2)))


_backend_lock = threading.Lock()
_backend: list[Any] = []  # the one backend, once loaded


def libusb_backend() -> Any:
    """pyusb's libusb-1.0 backend (one libusb context per process), or a clear error."""
    with _backend_lock:
        if not _backend:
            import usb.backend.libusb1

            # ctypes' find_library needs ldconfig's cache (or gcc); the soname is enough.
            def find(name: str) -> str | None:
                return ctypes.util.find_library(name) or LIBUSB_SONAME

            backend = usb.backend.libusb1.get_backend(find_library=find)
            if backend is None:
                raise TransportError(
                    "libusb-1.0 is not installed: install it (Debian/Ubuntu: apt-get install "
                    "libusb-1.0-0) to serve raw USB devices"
                )
            _backend.append(backend)
        return _backend[0]


def _usb_errno(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) else None


def _classify_open_error(node: str, exc: BaseException) -> TransportError:
    code = _usb_errno(exc)
    if code in _GONE or code == errno.ENOENT:
        error: TransportError = PortNotFound(f"{node}: {exc}")
    elif code == errno.EBUSY:
        error = PortBusy(f"{node}: interface claimed by another process or driver ({exc})")
    else:
        error = TransportError(f"{node}: {exc}")
    return error


@dataclass(slots=True)
class _Claimed:
    device: Any
    interface: int
    ep_in: int
    ep_out: int
    packet_size: int
    vendor: int
    product: int


def _find_interface(device: Any) -> tuple[int, int, int, int]:
    """(interface number, bulk IN address, bulk OUT address, IN packet size) or an error."""
    import usb.util

    config = device.get_active_configuration()
    for interface in config:
        triple = (
            interface.bInterfaceClass,
            interface.bInterfaceSubClass,
            interface.bInterfaceProtocol,
        )
        if triple != WIRELET_INTERFACE:
            continue
        ep_in = ep_out = None
        for endpoint in interface:
            if usb.util.endpoint_type(endpoint.bmAttributes) != usb.util.ENDPOINT_TYPE_BULK:
                continue
            if usb.util.endpoint_direction(endpoint.bEndpointAddress) == usb.util.ENDPOINT_IN:
                ep_in = ep_in or endpoint
            else:
                ep_out = ep_out or endpoint
        if ep_in is None or ep_out is None:
            raise TransportError(
                f"interface {interface.bInterfaceNumber} is a wirelet interface without one bulk "
                "IN and one bulk OUT endpoint (PROTOCOL.md, USB binding)"
            )
        return (
            interface.bInterfaceNumber,
            ep_in.bEndpointAddress,
            ep_out.bEndpointAddress,
            ep_in.wMaxPacketSize,
        )
    klass, subclass, protocol = WIRELET_INTERFACE
    raise TransportError(
        f"no wirelet interface (class {klass:02x}, subclass {subclass:02x}, protocol "
        f"{protocol:02x}) in the active configuration: the firmware must declare one "
        "(PROTOCOL.md, USB binding)"
    )


def _open_blocking(node: str) -> _Claimed:
    import usb.core
    import usb.util

    where = parse_node(node)
    backend = libusb_backend()
    device = usb.core.find(
        backend=backend,
        custom_match=lambda d: d.bus == where.bus and d.address == where.address,
    )
    if device is None:
        raise PortNotFound(f"{node}: no USB device at bus {where.bus} address {where.address}")
    try:
        number, ep_in, ep_out, packet = _find_interface(device)
        # A kernel driver on a vendor-specific interface is there only because someone bound
        # one by hand; it cannot be using our protocol, so taking the interface is safe. libusb
        # never detaches "usbfs" (another program's claim): that one stays busy.
        if device.is_kernel_driver_active(number):
            _log.info("%s: detaching the kernel driver of interface %d", node, number)
            device.detach_kernel_driver(number)
        usb.util.claim_interface(device, number)
    except TransportError as exc:
        usb.util.dispose_resources(device)
        raise TransportError(
            f"{node} ({device.idVendor:04x}:{device.idProduct:04x}): {exc}"
        ) from exc
    except usb.core.USBError as exc:
        with contextlib.suppress(usb.core.USBError):
            usb.util.dispose_resources(device)
        raise _classify_open_error(node, exc) from exc
    return _Claimed(device, number, ep_in, ep_out, packet, device.idVendor, device.idProduct)


def _dispose(claimed: _Claimed) -> None:
    import usb.core
    import usb.util

    with contextlib.suppress(usb.core.USBError):
        usb.util.release_interface(claimed.device, claimed.interface)
    with contextlib.suppress(usb.core.USBError):
        usb.util.dispose_resources(claimed.device)


def _release_abandoned(opening: asyncio.Future[_Claimed]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    threading.Thread(target=_dispose, args=(opening.result(),), daemon=True).start()


class UsbTransport(Transport):
    """A claimed wirelet interface. Use `await UsbTransport.open("/dev/bus/usb/001/004")`."""

    def __init__(self, node: str, claimed: _Claimed) -> None:
        self._node = node
        self._claimed = claimed
        self._loop = asyncio.get_running_loop()
        # Received bytes waiting for read(); filled on the loop (call_soon_threadsafe).
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered_in = 0
        self._data_waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[str] = self._loop.create_future()
        # Outgoing queue, shared with the writer thread under `_cond`.
        self._cond = threading.Condition()
        self._out: collections.deque[bytes] = collections.deque()
        self._buffered_out = 0
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._read_allowed = threading.Event()
        self._read_allowed.set()
        self._stopping = threading.Event()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"usb-in {node}", daemon=True),
            threading.Thread(target=self._write_loop, name=f"usb-out {node}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    async def open(cls, node: str) -> UsbTransport:
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, _open_blocking, node)
        try:
            claimed = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The caller gave up (its open timeout); the thread goes on and may still claim the
            # interface: release it then, or the next open would find it busy.
            opening.add_done_callback(_release_abandoned)
            raise
        except TransportError:
            raise
        except Exception as exc:  # libusb/pyusb surprises (USBError is handled in the thread)
            raise _classify_open_error(node, exc) from exc
        _log.debug(
            "%s: claimed interface %d of %04x:%04x (IN 0x%02x, OUT 0x%02x, %d-byte packets)",
            node,
            claimed.interface,
            claimed.vendor,
            claimed.product,
            claimed.ep_in,
            claimed.ep_out,
            claimed.packet_size,
        )
        return cls(node, claimed)

    # --- Transport ------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"{self._node} ({self._claimed.vendor:04x}:{self._claimed.product:04x})"

    @property
    def kind(self) -> str:
        return "usb"

    @property
    def is_open(self) -> bool:
        return not self._lost.done() and not self._closed

    async def read(self) -> bytes:
        while not self._chunks:
            if self._lost.done():
                raise TransportClosed(f"{self._node}: {self._lost.result()}")
            self._data_waiter = self._loop.create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered_in = 0
        self._read_allowed.set()
        return data

    @property
    def ready_to_write(self) -> bool:
        return self.is_open and self._can_write.is_set()

    def write_nowait(self, data: bytes) -> None:
        with self._cond:
            self._out.append(bytes(data))
            self._buffered_out += len(data)
            if self._buffered_out > WRITE_HIGH_WATER:
                self._can_write.clear()
            self._cond.notify()

    async def write(self, data: bytes) -> None:
        if not self.is_open:
            raise TransportClosed(f"{self._node}: closed")
        self.write_nowait(data)
        while not self._can_write.is_set() and not self._lost.done():
            # _set_lost sets _can_write too, so this wait ends on a vanish as well.
            await self._can_write.wait()
        if self._lost.done():
            raise TransportClosed(f"{self._node}: {self._lost.result()} while writing")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._read_allowed.set()
        with self._cond:
            self._cond.notify_all()
        self._set_lost("closed")
        await asyncio.to_thread(self._release)

    # --- threads --------------------------------------------------------------------------

    def _release(self) -> None:
        for thread in self._threads:
            thread.join()
        _dispose(self._claimed)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody listens
            self._loop.call_soon_threadsafe(callback, *args)

    def _read_loop(self) -> None:
        import usb.core

        device, endpoint = self._claimed.device, self._claimed.ep_in
        buffer = array.array("B", bytes(READ_SIZE))
        while not self._stopping.is_set():
            if not self._read_allowed.wait(READ_POLL_MS / 1000):
                continue  # the link layer is behind: leave the bytes in the device
            try:
                count = device.read(endpoint, buffer, timeout=READ_POLL_MS)
            except usb.core.USBTimeoutError:
                continue
            except usb.core.USBError as exc:
                if self._stopping.is_set():
                    return
                if _usb_errno(exc) == errno.EPIPE:  # a halted endpoint: clear it and go on
                    with contextlib.suppress(usb.core.USBError):
                        device.clear_halt(endpoint)
                        continue
                self._call(self._set_lost, self._describe(exc))
                return
            if count:
                self._call(self._on_data, buffer[:count].tobytes())

    def _write_loop(self) -> None:
        import usb.core

        device, endpoint = self._claimed.device, self._claimed.ep_out
        while True:
            with self._cond:
                while not self._out and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return
                parts: list[bytes] = []
                size = 0
                while self._out and size < WRITE_CHUNK:
                    part = self._out.popleft()
                    parts.append(part)
                    size += len(part)
                self._buffered_out -= size
            chunk = b"".join(parts)
            try:
                device.write(endpoint, chunk, timeout=WRITE_TIMEOUT_MS)
            except usb.core.USBTimeoutError:
                # The device did not take the bytes in time; the link layer retransmits frames
                # that were not acknowledged, and the receiver resynchronises at the next 0x00.
                _log.warning("%s: device took no OUT data for %d ms", self._node, WRITE_TIMEOUT_MS)
            except usb.core.USBError as exc:
                if self._stopping.is_set():
                    return
                if _usb_errno(exc) == errno.EPIPE:
                    with contextlib.suppress(usb.core.USBError):
                        device.clear_halt(endpoint)
                        continue
                self._call(self._set_lost, self._describe(exc))
                return
            finally:
                self._call(self._update_can_write)

    def _describe(self, exc: BaseException) -> str:
        if _usb_errno(exc) in _GONE:
            return f"device vanished ({exc})"
        return f"USB error ({exc})"

    # --- on the event loop ----------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered_in += len(data)
        if self._buffered_in > READ_HIGH_WATER:
            self._read_allowed.clear()
        self._wake()

    def _update_can_write(self) -> None:
        with self._cond:
            below = self._buffered_out <= WRITE_HIGH_WATER // 2
        if below:
            self._can_write.set()

    def _set_lost(self, why: str) -> None:
        if not self._lost.done():
            self._lost.set_result(why)
            if why != "closed":
                _log.info("%s: %s", self._node, why)
        self._stopping.set()
        self._read_allowed.set()
        with self._cond:
            self._cond.notify_all()
        self._can_write.set()
        self._wake()

    def _wake(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)


def usb_opener(resolve_node: Callable[[], str]) -> TransportOpener:
    """A `TransportOpener` that asks where the device is now on every (re)connect."""

    async def open_transport() -> Transport:
        return await UsbTransport.open(resolve_node())

    return open_transport
