"""Control socket: change a running emulator from another process.

A unix socket at DIR/.control.sock speaks JSON lines. Request:
    {"device": "emu-0001", "op": "unplug"}
    {"device": "emu-0001", "op": "fault", "faults": {"drop": 0.05, "delay_ms": 20}}
    {"device": "emu-0001", "op": "misbehave", "misbehaviour": {"foreign_output": true}}
    {"op": "list"}
Response: {"ok": true, ...} or {"ok": false, "error": "..."}.
Ops: list, unplug, replug, reboot, hang, resume, fault, misbehave, status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

CONTROL_SOCKET_NAME = ".control.sock"
MAX_REQUEST_BYTES = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def control_socket_path(directory: str | Path) -> Path:
    return Path(directory) / CONTROL_SOCKET_NAME


class ControlServer:
    """Serves JSON-line requests on a unix socket; every client connection is tracked and closed."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self._path = path
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        self._server = await asyncio.start_unix_server(
            self._client_connected, path=str(self._path), limit=MAX_REQUEST_BYTES
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while line := await reader.readline():
                reply = await self._answer(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            _log.debug("control client dropped: %s", exc)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            return await self._handler(request)
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}


def send_control(directory: str | Path, request: dict[str, Any], timeout: float = 10.0) -> Any:
    """Blocking client for the CLI: one request, one reply."""
    path = control_socket_path(directory)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no emulator control socket at {path} (is the emulator running?)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


async def send_control_async(directory: str | Path, request: dict[str, Any]) -> Any:
    """Async client, for tests that drive an emulator running in another process."""
    reader, writer = await asyncio.open_unix_connection(str(control_socket_path(directory)))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        return json.loads(await reader.readline())
    finally:
        writer.close()
        await writer.wait_closed()
