"""SerialTransport over a real pty: bytes both ways, exclusive open, a vanishing port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

import pytest

from gateway.errors import PortBusy, PortNotFound, TransportClosed
from gateway.transport.serial import SerialSettings, SerialTransport
from hil.emulator.pty_port import PtyPort
from tests.gateway.fakes import until
from tests.link.helpers import WAIT


async def read_exactly(transport: SerialTransport, n: int) -> bytes:
    out = bytearray()
    async with asyncio.timeout(WAIT):
        while len(out) < n:
            out += await transport.read()
    return bytes(out)


async def test_bytes_flow_both_ways_and_port_vanishing_is_seen() -> None:
    received = bytearray()
    all_in = asyncio.Event()

    def on_data(data: bytes) -> None:
        received.extend(data)
        if len(received) >= len(payload):
            all_in.set()

    payload = bytes(range(256)) * 64  # every byte value: raw mode, no line discipline
    port = PtyPort(on_data, lambda: None)
    port.open()
    try:
        transport = await SerialTransport.open(port.slave_path, SerialSettings(dtr=True, rts=False))
        assert transport.kind == "serial"
        await transport.write(payload)
        port.write(payload[::-1])
        assert await read_exactly(transport, len(payload)) == payload[::-1]
        async with asyncio.timeout(WAIT):
            await all_in.wait()
        assert bytes(received) == payload

        port.close()  # the cable is pulled
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(_read_until_closed(transport), WAIT)
        assert not transport.is_open
        await transport.close()
        await transport.close()  # idempotent
    finally:
        port.close()


async def test_missing_port_and_exclusive_open(tmp_path: Path) -> None:
    with pytest.raises(PortNotFound):
        await SerialTransport.open(str(tmp_path / "ttyNOPE"))
    port = PtyPort(lambda data: None, lambda: None)
    port.open()
    try:
        first = await SerialTransport.open(port.slave_path)
        with pytest.raises(PortBusy):
            await SerialTransport.open(port.slave_path)
        await first.close()
        second = await SerialTransport.open(port.slave_path)  # free again after close
        await second.close()
    finally:
        port.close()


async def _read_until_closed(transport: SerialTransport) -> None:
    while await transport.read():
        pass  # the emulator sent nothing more; anything here is stale


def _raw_pty() -> tuple[int, str]:
    """A pty in raw mode, its master side read (or not) by the test itself."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    os.set_blocking(master, False)
    return master, path


async def test_pump_hands_over_earlier_bytes_first_then_each_read_in_order() -> None:
    master, path = _raw_pty()
    transport = await SerialTransport.open(path)
    try:
        os.write(master, b"before ")
        # Queued by the receive callback while nobody reads yet.
        await until("the first bytes queued", lambda: transport._rx.buffered >= len(b"before "))
        received = bytearray()
        in_tasks: list[asyncio.Task[object] | None] = []
        done = asyncio.Event()

        def on_data(data: bytes) -> None:
            received.extend(data)
            in_tasks.append(asyncio.current_task())
            if received.endswith(b"end"):
                done.set()

        pump = asyncio.create_task(transport.pump(on_data))
        for word in (b"one ", b"two ", b"end"):
            os.write(master, word)
        async with asyncio.timeout(WAIT):
            await done.wait()
        assert bytes(received) == b"before one two end"
        # The bytes after the first batch came straight from the receive callback, not through
        # a task woken for each read.
        assert in_tasks[0] is pump and in_tasks[1:] and set(in_tasks[1:]) == {None}
        os.close(master)  # the cable is pulled: the pump ends with it
        master = -1
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(pump, WAIT)
    finally:
        if master >= 0:
            os.close(master)
        await transport.close()


async def test_pump_ends_with_what_its_callback_raised() -> None:
    master, path = _raw_pty()
    transport = await SerialTransport.open(path)
    try:

        def on_data(data: bytes) -> None:
            raise ValueError(f"cannot take {data!r}")

        pump = asyncio.create_task(transport.pump(on_data))
        os.write(master, b"bad")
        with pytest.raises(ValueError, match="cannot take"):
            await asyncio.wait_for(pump, WAIT)
        assert transport.is_open  # the transport itself is fine; its owner decides
    finally:
        os.close(master)
        await transport.close()


async def test_a_write_the_tty_takes_in_parts_leaves_no_writer_behind() -> None:
    """A write the tty takes only in part is finished when the device reads; after that the
    event loop has nothing to do for the port (pyserial-asyncio-fast left its writer registered
    and failed on every pass of the loop, spinning a core)."""
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    loop.set_exception_handler(lambda _loop, context: failures.append(context["message"]))
    master, path = _raw_pty()
    transport = await SerialTransport.open(path)
    try:
        sent = b"".join(bytes([i % 251 + 1]) * 1024 for i in range(256))  # more than a pty holds
        write = asyncio.create_task(transport.write(sent))
        received = bytearray()
        while len(received) < len(sent):
            await asyncio.sleep(0.001)
            with contextlib.suppress(BlockingIOError):
                received += os.read(master, 65536)
        await asyncio.wait_for(write, WAIT)
        assert bytes(received) == sent
        await asyncio.sleep(0.2)  # passes of the loop with the port idle
        assert failures == []
        # and the next write still goes out whole
        await transport.write(b"after")
        await until("the next write", lambda: _read_some(master) == b"after")
    finally:
        await transport.close()
        os.close(master)
        loop.set_exception_handler(None)


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 1024)
    except BlockingIOError:
        return b""
