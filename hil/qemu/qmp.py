"""A small QMP client (QEMU's JSON control protocol over a unix socket)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

QMP_TIMEOUT_S = 10.0  # any command answers at once; only reached when QEMU is wedged


class QmpError(RuntimeError):
    """QEMU answered a command with an error, or the connection failed."""


class QmpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path, within_s: float = QMP_TIMEOUT_S) -> QmpClient:
        """Connect once QEMU listens (it creates the socket shortly after starting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    raise QmpError(f"QEMU's QMP socket {path} did not appear") from None
                await asyncio.sleep(0.02)
        client = cls(reader, writer)
        await client._read()  # the greeting
        await client.execute("qmp_capabilities")
        return client

    async def _read(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self._reader.readline(), QMP_TIMEOUT_S)
        if not line:
            raise QmpError("QEMU closed the QMP connection")
        message: dict[str, Any] = json.loads(line)
        return message

    async def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        async with self._lock:
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            while True:
                reply = await self._read()
                if "event" in reply:
                    continue  # asynchronous events (RESET, STOP...): not needed here
                if "error" in reply:
                    raise QmpError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
                return reply.get("return")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
