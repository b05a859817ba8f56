"""A serial port whose descriptor is above select()'s FD_SETSIZE still reads and writes.

A gateway serving hundreds of devices holds more than 1024 descriptors; pyserial's read select()s
and raised ValueError for such ports (found by bench.scale at 500 devices).
"""

from __future__ import annotations

import asyncio
import os
import resource

import pytest

from gateway.errors import TransportClosed
from gateway.transport.serial import SerialTransport
from hil.emulator.pty_port import PtyPort

FD_SETSIZE = 1024


async def test_port_opened_above_fd_setsize_reads_writes_and_sees_vanishing() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FD_SETSIZE + 64:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {FD_SETSIZE + 64}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FD_SETSIZE + 64), hard))
    received = bytearray()
    got_ack = asyncio.Event()

    def on_data(data: bytes) -> None:
        received.extend(data)
        if len(received) >= 3:
            got_ack.set()

    port = PtyPort(on_data, lambda: None)
    port.open()
    fillers: list[int] = []
    try:
        # Take every low descriptor so the port's own lands above FD_SETSIZE.
        while (fd := os.open(os.devnull, os.O_RDONLY)) < FD_SETSIZE:
            fillers.append(fd)
        os.close(fd)
        transport = await SerialTransport.open(port.slave_path)
        for fd in fillers:
            os.close(fd)
        fillers.clear()
        port.write(b"hello from a high fd")
        data = bytearray()
        async with asyncio.timeout(10):
            while len(data) < 20:
                data += await transport.read()
        assert bytes(data) == b"hello from a high fd"
        await transport.write(b"ack")
        await asyncio.wait_for(got_ack.wait(), 10)
        assert bytes(received) == b"ack"
        port.close()
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(_read_until_closed(transport), 10)
        await transport.close()
    finally:
        for fd in fillers:
            os.close(fd)
        port.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _read_until_closed(transport: SerialTransport) -> None:
    while True:
        await transport.read()
