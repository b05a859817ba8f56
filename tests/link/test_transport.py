"""SerialTransport over a real pty: bytes both ways, exclusive open, a vanishing port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import PortBusy, PortNotFound, TransportClosed
from gateway.transport.serial import SerialSettings, SerialTransport
from hil.emulator.pty_port import PtyPort
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
