"""The kubelet side of `kubectl exec` and `kubectl attach`: the WebSocket channel protocol.

Kubernetes 1.37's API server proxies an exec/attach WebSocket straight to the kubelet when the
node declares the `ExtendWebSocketsToKubelet` feature in `status.declaredFeatures` (wirelet
nodes do); otherwise it translates to SPDY/3.1, which this server does not speak.

Wire format (subprotocols `v5.channel.k8s.io` and `v4.channel.k8s.io`): every binary message
starts with one channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (one JSON metav1.Status at
the end), 4 terminal resize; v5 adds 255 = "the sender closed channel N" (payload: N). The
server closes the WebSocket normally when done; clients read that as end of every stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

logger = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
# Output is sent in messages of at most this size so one write never holds a huge buffer.
MESSAGE_CHUNK = 32 * 1024

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """The query of an exec or attach request (the API server passes kubectl's through)."""

    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query: Mapping[str, str], commands: list[str]) -> StreamOptions:
        """The API server names the streams `input`, `output`, `error` towards the kubelet
        (core/v1 ExecStdinParam...); `stdin`, `stdout`, `stderr` (its own API's names) are
        accepted too."""

        def flag(*names: str) -> bool:
            return any(query.get(name, "") in _TRUE for name in names)

        return cls(
            command=tuple(commands),
            stdin=flag("input", "stdin"),
            stdout=flag("output", "stdout"),
            stderr=flag("error", "stderr"),
            tty=flag("tty"),
        )


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int) -> dict[str, Any]:
    """kubectl exits with this code (it accepts 0..255, so the code is taken modulo 256)."""
    wire_code = code % 256
    if wire_code == 0:
        return success_status()
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(wire_code)}]},
    }


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    """kubectl prints `error: <message>` and exits 1."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class ChannelStream:
    """One accepted exec/attach WebSocket: write output channels, end with a status."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.closed_by_client = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def accept(cls, request: web.Request) -> ChannelStream:
        ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        stream = cls(ws)
        # Reading is what answers the client's pings (every 5 s from kubectl): keep reading
        # for the whole life of the stream, whatever the command is doing.
        stream._reader = asyncio.ensure_future(stream._read())
        return stream

    @property
    def protocol(self) -> str:
        return self.ws.ws_protocol or ""

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type is WSMsgType.BINARY and message.data[:1] == bytes([STDIN]):
                    # Input the device cannot take was refused before the stream opened;
                    # anything arriving anyway is dropped.
                    continue
        except Exception as exc:  # a broken connection ends the stream like a close
            logger.debug("exec stream read ended: %s", exc)
        finally:
            self.closed_by_client.set()

    async def write(self, channel: int, data: bytes) -> None:
        for start in range(0, len(data), MESSAGE_CHUNK):
            await self.ws.send_bytes(bytes([channel]) + data[start : start + MESSAGE_CHUNK])

    async def finish(self, status: dict[str, Any]) -> None:
        """Send the final status on the error channel and close normally."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            if not self.ws.closed:
                await self.ws.send_bytes(
                    bytes([ERROR]) + json.dumps(status, separators=(",", ":")).encode()
                )
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
