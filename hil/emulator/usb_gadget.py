"""An emulated raw-USB wirelet device: umockdev answers libusb's usbdevfs ioctls for it.

Runs under Debian's python3 (GObject bindings for umockdev) inside `umockdev-wrapper`:

    umockdev-wrapper /usr/bin/python3 -m hil.emulator.usb_gadget --pty /dev/pts/7 \\
        [--serial WL0001] [--vid cafe --pid 4001] [--tagged] [--claimed] [--hold-claims] \\
        -- COMMAND...

It builds a umockdev testbed with one USB device (sysfs attributes, descriptors, a udev
record) whose `/dev/bus/usb/BBB/DDD` node is backed by an ioctl handler, then runs COMMAND (the
gateway, `wirelet devices`, a test probe) with UMOCKDEV_DIR pointing at the testbed, so that
pyusb -> libusb -> usbdevfs in COMMAND runs for real against this handler. The device's two
bulk endpoints carry the byte stream of a pseudo-terminal (`--pty`, the slave side of an
`hil.emulator` device): OUT transfers are written to it, IN transfers are completed with what
the emulated firmware printed, as a USB device controller's FIFOs would.

Control on stdin, one word a line: `unplug` (in-flight transfers end with ESHUTDOWN, every
later ioctl fails with ENODEV, a "remove" uevent), `plug` (the device back at a new address),
`answer-claims` (with --hold-claims, CLAIMINTERFACE waits until then), `quit`. Events on stdout
as JSON lines: ready / unplugged / plugged with the node path, claimed / released. COMMAND's exit
status is ours.

Not imported by the gateway. What libusb asks and how it is answered: see docs/usb.md.
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import traceback
import tty
from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import GLib, UMockdev  # noqa: E402


def _ioc(direction: int, number: int, size: int) -> int:
    """Linux _IOC for the usbdevfs ('U') ioctls, x86-64/arm64 layout."""
    return (direction << 30) | (size << 16) | (ord("U") << 8) | number


_NONE, _WRITE, _READ = 0, 1, 2
SUBMITURB = _ioc(_READ, 10, 56)
DISCARDURB = _ioc(_NONE, 11, 0)
REAPURB = _ioc(_WRITE, 12, 8)
REAPURBNDELAY = _ioc(_WRITE, 13, 8)
CLAIMINTERFACE = _ioc(_READ, 15, 4)
RELEASEINTERFACE = _ioc(_READ, 16, 4)
CONNECTINFO = _ioc(_WRITE, 17, 8)
USBDEVFS_IOCTL = _ioc(_READ | _WRITE, 18, 16)
RESET = _ioc(_NONE, 20, 0)
CLEAR_HALT = _ioc(_READ, 21, 4)
SETINTERFACE = _ioc(_READ, 4, 8)
SETCONFIGURATION = _ioc(_READ, 5, 4)
GETDRIVER = _ioc(_WRITE, 8, 260)
GET_CAPABILITIES = _ioc(_READ, 26, 4)
GET_SPEED = _ioc(_NONE, 31, 0)
# struct usbdevfs_urb (x86-64): type, endpoint, status, flags, buffer, buffer_length, actual_length
URB_SIZE = 56
URB_HEAD = struct.Struct("<BBxxiI4xQii")
URB_STATUS_OFFSET = 4
URB_BUFFER_OFFSET = 16
URB_ACTUAL_OFFSET = 28
URB_TYPE_CONTROL = 2
CAPS = 0x01 | 0x02 | 0x04 | 0x08 | 0x10  # zero packet, bulk continuation, no size limit, ...
SPEED_FULL = 2  # enum usb_device_speed: USB_SPEED_FULL

WIRELET_INTERFACE = (0xFF, 0x57, 0x01)
PACKET = 64  # full-speed bulk wMaxPacketSize
STRINGS = ("", "wirelet", "emulated USB board", "", "wirelet link")


def descriptors(vid: int, pid: int) -> bytes:
    """Device + configuration descriptors, as the sysfs `descriptors` file holds them."""
    device = struct.pack(
        "<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0, 0, 0, 64, vid, pid, 0x0100, 1, 2, 3, 1
    )
    interface = struct.pack("<BBBBBBBBB", 9, 4, 0, 0, 2, *WIRELET_INTERFACE, 4)
    ep_in = struct.pack("<BBBBHB", 7, 5, 0x81, 2, PACKET, 0)
    ep_out = struct.pack("<BBBBHB", 7, 5, 0x01, 2, PACKET, 0)
    body = interface + ep_in + ep_out
    config = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0x80, 50)
    return device + config + body


def _le(value: int) -> list[int]:
    return list(struct.pack("<i", value))


@dataclass
class _Urb:
    data: Any  # UMockdev.IoctlData of the struct
    buffer: Any  # UMockdev.IoctlData of its buffer
    endpoint: int
    length: int
    sent: int = 0  # OUT: bytes already written to the pty


class UsbDevice(UMockdev.IoctlBase):  # type: ignore[misc]
    """One plugged-in instance: in-flight and completed URBs, and the pty behind the pipes."""

    def __init__(
        self, pty_fd: int, serial: str, *, claimed: bool = False, hold_claims: bool = False
    ) -> None:
        super().__init__()
        self.claimed = claimed  # another program holds the interface: claiming it is EBUSY
        self.hold_claims = hold_claims
        self.held: list[Any] = []  # CLAIMINTERFACE calls not answered yet
        self.fifo_fd = -1  # see attach_readiness
        self.pty_fd = pty_fd
        self.strings = (*STRINGS[:3], serial, STRINGS[4])
        self.gone = False
        self.reads: collections.deque[_Urb] = collections.deque()  # IN, waiting for bytes
        self.writes: collections.deque[_Urb] = collections.deque()  # OUT, waiting for the pty
        self.done: collections.deque[Any] = collections.deque()  # completed, to be reaped
        self.rx = bytearray()  # from the firmware, waiting for an IN transfer
        # umockdev answers ioctls on its own thread (the testbed's main context) while the pty
        # watches run on the default main context: one lock for all of the device's state.
        self.lock = threading.RLock()
        self._read_watch = GLib.io_add_watch(pty_fd, GLib.IO_IN, self._pty_readable)
        self._write_watch = 0

    # --- poll() on the node: POLLOUT means "a URB is ready to reap", as on usbdevfs ------------

    def attach_readiness(self, fifo_fd: int) -> None:
        """The node is a FIFO the client also has open: full, poll() gives no POLLOUT; drained,
        it does. (A plain file would always poll ready and libusb would reap in a busy loop.)"""
        self.fifo_fd = fifo_fd
        self._quiet()

    def _completed(self, urb: Any) -> None:
        self.done.append(urb)
        self._completed_wake()

    def _completed_wake(self) -> None:
        if self.fifo_fd >= 0:
            try:
                while os.read(self.fifo_fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def _quiet(self) -> None:
        if self.fifo_fd < 0:
            return
        try:
            while os.write(self.fifo_fd, bytes(65536)):
                pass
        except BlockingIOError:
            pass

    def answer_claims(self) -> None:
        with self.lock:
            for client in self.held:
                _emit(event="claimed", interface=0)
                client.complete(0, 0)
            self.held.clear()

    # --- the pty side ---------------------------------------------------------------------

    def _pty_readable(self, fd: int, cond: int) -> bool:
        with self.lock:
            return self._read_pty(fd, cond)

    def _read_pty(self, fd: int, _cond: int) -> bool:
        if self.gone:
            self._read_watch = 0
            return False
        if len(self.rx) < 256 * 1024:
            try:
                self.rx += os.read(fd, 65536)
            except BlockingIOError:
                pass
            except OSError:
                self._read_watch = 0
                return False
        self._fill_reads()
        if len(self.rx) >= 256 * 1024:
            self._read_watch = 0
            return False  # no IN transfers posted: the device's FIFO is full (NAK)
        return True

    def _fill_reads(self) -> None:
        while self.rx and self.reads:
            urb = self.reads.popleft()
            chunk = bytes(self.rx[: urb.length])
            del self.rx[: urb.length]
            urb.buffer.update(0, list(chunk))
            urb.data.update(URB_ACTUAL_OFFSET, _le(len(chunk)))
            self._completed(urb.data)
        if self._read_watch == 0 and len(self.rx) < 256 * 1024 and not self.gone:
            self._read_watch = GLib.io_add_watch(self.pty_fd, GLib.IO_IN, self._pty_readable)

    def _drain_writes(self) -> bool:
        while self.writes:
            urb = self.writes[0]
            payload = bytes(urb.buffer.retrieve())[urb.sent : urb.length]
            try:
                urb.sent += os.write(self.pty_fd, payload)
            except BlockingIOError:
                break
            if urb.sent < urb.length:
                break
            self.writes.popleft()
            urb.data.update(URB_ACTUAL_OFFSET, _le(urb.length))
            self._completed(urb.data)
        if self.writes and self._write_watch == 0:
            self._write_watch = GLib.io_add_watch(self.pty_fd, GLib.IO_OUT, self._pty_writable)
        return bool(self.writes)

    def _pty_writable(self, _fd: int, _cond: int) -> bool:
        with self.lock:
            return self._write_pty()

    def _write_pty(self) -> bool:
        more = self._drain_writes() if not self.gone else False
        if not more:
            self._write_watch = 0
        return more

    # --- unplug ---------------------------------------------------------------------------

    def unplug(self) -> None:
        """As the kernel does on disconnect: pending URBs end with ESHUTDOWN, then ENODEV."""
        with self.lock:
            self._unplug()

    def _unplug(self) -> None:
        self.gone = True
        self._completed_wake()
        for urb in [*self.reads, *self.writes]:
            urb.data.update(URB_STATUS_OFFSET, _le(-errno.ESHUTDOWN))
            self._completed(urb.data)
        self.reads.clear()
        self.writes.clear()
        for watch in (self._read_watch, self._write_watch):
            if watch:
                GLib.source_remove(watch)
        self._read_watch = self._write_watch = 0

    # --- ioctls ---------------------------------------------------------------------------

    def do_handle_ioctl(self, client: Any) -> bool:
        with self.lock:
            try:
                return self._handle_ioctl(client)
            except Exception:  # a bug here: say so, and fail the one ioctl as a device would
                traceback.print_exc()
                client.complete(-1, errno.EIO)
                return True

    def _handle_ioctl(self, client: Any) -> bool:
        request = client.get_request()
        arg = client.get_arg()
        if request in (REAPURB, REAPURBNDELAY):
            return self._reap(client, arg)
        if self.gone:
            client.complete(-1, errno.ENODEV)
            return True
        if request == SUBMITURB:
            return self._submit(client, arg)
        if request == DISCARDURB:
            return self._discard(client, arg)
        if request == GET_CAPABILITIES:
            arg.resolve(0, 4).update(0, list(struct.pack("<I", CAPS)))
            client.complete(0, 0)
        elif request == GETDRIVER:
            client.complete(-1, errno.ENODATA)  # no kernel driver bound
        elif request == GET_SPEED:
            client.complete(SPEED_FULL, 0)
        elif request == CLAIMINTERFACE and self.claimed:
            client.complete(-1, errno.EBUSY)
        elif request == CLAIMINTERFACE and self.hold_claims:
            self.held.append(client)  # answered on "answer-claims" (a device that is slow)
        elif request in (CLAIMINTERFACE, RELEASEINTERFACE):
            number = struct.unpack("<I", bytes(arg.resolve(0, 4).retrieve()))[0]
            _emit(event="claimed" if request == CLAIMINTERFACE else "released", interface=number)
            client.complete(0, 0)
        elif request in (
            CLEAR_HALT,
            SETINTERFACE,
            SETCONFIGURATION,
            RESET,
        ):
            client.complete(0, 0)
        else:
            client.complete(-1, errno.ENOTTY)
        return True

    def _submit(self, client: Any, arg: Any) -> bool:
        data = arg.resolve(0, URB_SIZE)
        kind, endpoint, _status, _flags, _buf, length, _actual = URB_HEAD.unpack_from(
            bytes(data.retrieve())
        )
        buffer = data.resolve(URB_BUFFER_OFFSET, length)
        urb = _Urb(data, buffer, endpoint, length)
        if kind == URB_TYPE_CONTROL:
            self._control(urb)
        elif endpoint == 0x81:
            self.reads.append(urb)
            self._fill_reads()
        elif endpoint == 0x01:
            self.writes.append(urb)
            self._drain_writes()
        else:
            client.complete(-1, errno.ENOENT)
            return True
        client.complete(0, 0)
        return True

    def _control(self, urb: _Urb) -> None:
        """GET_DESCRIPTOR(string) is all libusb/pyusb ask the default pipe here."""
        setup = bytes(urb.buffer.retrieve()[:8])
        request_type, request, value, _index, length = struct.unpack("<BBHHH", setup)
        reply = b""
        if request_type == 0x80 and request == 6 and value >> 8 == 3:
            index = value & 0xFF
            if index == 0:
                reply = bytes([4, 3, 0x09, 0x04])  # LANGID en-US
            elif index < len(self.strings) and self.strings[index]:
                text = self.strings[index].encode("utf-16-le")
                reply = bytes([2 + len(text), 3]) + text
        reply = reply[:length]
        if reply:
            urb.buffer.update(8, list(reply))
        urb.data.update(URB_ACTUAL_OFFSET, _le(len(reply)))
        if not reply:
            urb.data.update(URB_STATUS_OFFSET, _le(-errno.EPIPE))  # a stall, as for any unknown
        self._completed(urb.data)

    def _discard(self, client: Any, arg: Any) -> bool:
        address = struct.unpack("<Q", bytes(arg.retrieve()))[0]
        for queue in (self.reads, self.writes):
            for urb in queue:
                if urb.data.client_addr == address:
                    queue.remove(urb)
                    urb.data.update(URB_STATUS_OFFSET, _le(-errno.ENOENT))
                    self._completed(urb.data)
                    client.complete(0, 0)
                    return True
        client.complete(-1, errno.EINVAL)  # already completed: the reap will return it
        return True

    def _reap(self, client: Any, arg: Any) -> bool:
        if not self.done:
            if not self.gone:
                self._quiet()  # nothing to reap: poll() on the node blocks until there is
            client.complete(-1, errno.ENODEV if self.gone else errno.EAGAIN)
            return True
        arg.resolve(0, 8).set_ptr(0, self.done.popleft())
        client.complete(0, 0)
        return True


class Gadget:
    """The testbed, the device's sysfs/udev record and plug/unplug."""

    SYS = "/devices/pci0000:00/0000:00:14.0/usb1/1-1"

    def __init__(
        self,
        pty_path: str,
        serial: str,
        vid: int,
        pid: int,
        *,
        tagged: bool,
        claimed: bool,
        hold_claims: bool,
    ) -> None:
        self.testbed = UMockdev.Testbed.new()
        self.pty_fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.pty_fd, termios.TCSANOW)
        self.serial, self.vid, self.pid, self.tagged = serial, vid, pid, tagged
        self.claimed = claimed
        self.hold_claims = hold_claims
        self.address = 1
        self.device: UsbDevice | None = None
        self.sys_path = ""

    @property
    def node(self) -> str:
        return f"/dev/bus/usb/001/{self.address:03d}"

    def plug(self) -> None:
        self.address += 1
        self.device = UsbDevice(
            self.pty_fd, self.serial, claimed=self.claimed, hold_claims=self.hold_claims
        )
        # The handler first, so the node answers from the moment the "add" uevent is out.
        assert self.testbed.attach_ioctl(self.node, self.device)
        ids = f"E: ID_VENDOR_ID={self.vid:04x}\nE: ID_MODEL_ID={self.pid:04x}\n"
        ids += f"E: ID_SERIAL_SHORT={self.serial}\nE: ID_USB_INTERFACES=:ff5701:\n"
        if self.tagged:
            ids += "E: WIRELET_DEVICE=1\n"
        record = (
            f"P: {self.SYS}\nN: {self.node[5:]}\nE: SUBSYSTEM=usb\nE: DRIVER=usb\n"
            f"E: BUSNUM=001\nE: DEVNUM={self.address:03d}\nE: DEVNAME={self.node}\n"
            f"E: DEVTYPE=usb_device\n{ids}"
            f"A: busnum=1\\n\nA: devnum={self.address}\\n\nA: speed=12\\n\n"
            f"A: bConfigurationValue=1\\n\nA: idVendor={self.vid:04x}\\n\n"
            f"A: idProduct={self.pid:04x}\\n\nA: serial={self.serial}\\n\n"
            f"A: manufacturer={STRINGS[1]}\\n\nA: product={STRINGS[2]}\\n\n"
            f"H: descriptors={descriptors(self.vid, self.pid).hex()}\n"
        )
        self.sys_path = "/sys" + self.SYS
        self.testbed.add_from_string(record)
        # Replace the plain file umockdev made for the node by a FIFO that signals completions.
        node_file = self.testbed.get_root_dir() + self.node
        os.unlink(node_file)
        os.mkfifo(node_file, 0o660)
        self.device.attach_readiness(os.open(node_file, os.O_RDWR | os.O_NONBLOCK))
        self.testbed.uevent(self.sys_path, "add")

    def unplug(self) -> None:
        if self.device is None:
            return
        self.device.unplug()
        self.testbed.uevent(self.sys_path, "remove")
        self.testbed.remove_device(self.sys_path)
        self.device = None


def _emit(**event: Any) -> None:
    # One write(2) per line: the gadget and its command share this stdout pipe.
    os.write(sys.stdout.fileno(), (json.dumps(event) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hil.emulator.usb_gadget")
    parser.add_argument("--pty", required=True, help="slave side of an emulated device's pty")
    parser.add_argument("--serial", default="WL0001", help="iSerialNumber string")
    parser.add_argument("--vid", default="cafe", help="idVendor, hex")
    parser.add_argument("--pid", default="4001", help="idProduct, hex")
    parser.add_argument("--tagged", action="store_true", help="set WIRELET_DEVICE=1 (udev)")
    parser.add_argument(
        "--claimed", action="store_true", help="the interface is claimed elsewhere (EBUSY)"
    )
    parser.add_argument(
        "--hold-claims", action="store_true", help="answer CLAIMINTERFACE on answer-claims"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    vid, pid = int(args.vid, 16), int(args.pid, 16)
    gadget = Gadget(
        args.pty,
        args.serial,
        vid,
        pid,
        tagged=args.tagged,
        claimed=args.claimed,
        hold_claims=args.hold_claims,
    )
    gadget.plug()
    env = dict(os.environ, UMOCKDEV_DIR=gadget.testbed.get_root_dir())
    child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    _emit(event="ready", node=gadget.node, root=gadget.testbed.get_root_dir(), pid=child.pid)
    loop = GLib.MainLoop()
    status = {"code": 1}

    def on_exit(_pid: int, wait_status: int) -> None:
        status["code"] = os.waitstatus_to_exitcode(wait_status)
        loop.quit()

    def on_control(fd: int, _cond: int) -> bool:
        line = os.read(fd, 4096).decode()
        if not line:
            return False  # our stdin closed: keep serving until the command exits
        for word in line.split():
            if word == "unplug":
                gadget.unplug()
                _emit(event="unplugged")
            elif word == "plug":
                gadget.plug()
                _emit(event="plugged", node=gadget.node)
            elif word == "answer-claims" and gadget.device is not None:
                gadget.device.answer_claims()
            elif word == "quit":
                child.terminate()
        return True

    def on_terminate() -> bool:
        child.terminate()  # the command's exit then ends the loop
        return True

    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, child.pid, on_exit)
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, on_control)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, on_terminate)
    try:
        loop.run()
    finally:
        shutil.rmtree(gadget.testbed.get_root_dir(), ignore_errors=True)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
