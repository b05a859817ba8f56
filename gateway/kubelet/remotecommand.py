"""The kubelet side of `kubectl exec` and `kubectl attach`: WebSocket and SPDY/3.1 channels.

Kubernetes 1.37's API server proxies an exec/attach WebSocket straight to the kubelet when the
node declares the `ExtendWebSocketsToKubelet` feature in `status.declaredFeatures` (wirelet
nodes do); otherwise (older API servers, the gate off, or a client that forces SPDY) the
kubelet is spoken to in SPDY/3.1 with one stream per channel (`SpdyChannelStream`).

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

from gateway.kubelet.spdy import Frame, GoAway, Ping, SpdyError, SpdyFramer, SynStream

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
        self.response: web.StreamResponse = ws
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


# --- SPDY/3.1 -------------------------------------------------------------------------------

SPDY_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
# How long the client has to open every stream it announced (the kubelet's
# streamCreationTimeout default).
STREAM_CREATION_TIMEOUT_S = 30.0
# Above this many bytes waiting in the socket buffer, writers wait.
_HIGH_WATER = 256 * 1024
_STREAM_TYPES = {
    "stdin": STDIN,
    "stdout": STDOUT,
    "stderr": STDERR,
    "error": ERROR,
    "resize": RESIZE,
}


def is_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/3")


class _Feed:
    """What aiohttp's protocol hands the bytes after the upgrade to (its payload parser slot)."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.chunks.put_nowait(data)
        return False, b""

    def feed_eof(self) -> None:
        self.chunks.put_nowait(None)


class SpdyChannelStream:
    """One accepted exec/attach SPDY connection: the same interface as ChannelStream.

    The client opens one stream per channel (header `streamtype`: error, stdin, stdout,
    stderr, resize); `accept` waits until every stream the query announced is open."""

    def __init__(self, request: web.Request, protocol: str, response: web.StreamResponse) -> None:
        self.request = request
        self.protocol = protocol
        self.response = response
        self.framer = SpdyFramer()
        self.closed_by_client = asyncio.Event()
        self._streams: dict[int, int] = {}  # channel -> SPDY stream id
        self._opened = asyncio.Event()
        self._expected: set[int] = set()
        self._feed = _Feed()
        self._reader: asyncio.Task[None] | None = None
        self._last_stream = 0

    @classmethod
    async def accept(
        cls, request: web.Request, options: StreamOptions
    ) -> SpdyChannelStream | web.Response:
        offered = [
            version.strip()
            for header in request.headers.getall("X-Stream-Protocol-Version", [])
            for version in header.split(",")
        ]
        chosen = next((v for v in offered if v in SPDY_PROTOCOLS), None)
        if chosen is None:
            return web.json_response(
                failure_status(
                    f"no supported stream protocol in {offered or 'the request'}; this kubelet "
                    f"speaks {', '.join(SPDY_PROTOCOLS)}",
                    "BadRequest",
                    400,
                ),
                status=400,
            )
        response = web.StreamResponse(
            status=101,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "SPDY/3.1",
                "X-Stream-Protocol-Version": chosen,
            },
        )
        stream = cls(request, chosen, response)
        stream._expected = {ERROR}
        if options.stdin:
            stream._expected.add(STDIN)
        if options.stdout:
            stream._expected.add(STDOUT)
        if options.stderr and not options.tty:
            stream._expected.add(STDERR)
        if options.tty:
            stream._expected.add(RESIZE)
        await response.prepare(request)
        request.protocol.set_parser(stream._feed)  # type: ignore[arg-type]
        stream._reader = asyncio.ensure_future(stream._read())
        try:
            await asyncio.wait_for(stream._opened.wait(), STREAM_CREATION_TIMEOUT_S)
        except TimeoutError:
            logger.info("exec client opened %s of %s streams", stream._streams, stream._expected)
            await stream.close()
        return stream

    def _send(self, data: bytes) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("exec client went away")
        transport.write(data)

    async def _read(self) -> None:
        try:
            while (chunk := await self._feed.chunks.get()) is not None:
                for frame in self.framer.receive(chunk):
                    self._on_frame(frame)
        except (SpdyError, ConnectionError) as exc:
            logger.info("exec SPDY connection ended: %s", exc)
        finally:
            self.closed_by_client.set()
            self._opened.set()  # nobody waits for streams that will not come

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, SynStream):
            channel = _STREAM_TYPES.get(frame.headers.get("streamtype", ""))
            self._last_stream = max(self._last_stream, frame.stream_id)
            if channel is None:
                self._send(self.framer.rst_stream(frame.stream_id, 1))  # PROTOCOL_ERROR
                return
            self._streams[channel] = frame.stream_id
            self._send(self.framer.syn_reply(frame.stream_id))
            if self._expected <= set(self._streams):
                self._opened.set()
        elif isinstance(frame, Ping):
            self._send(self.framer.ping(frame.ping_id))
        elif isinstance(frame, GoAway):
            raise ConnectionResetError("client said GOAWAY")
        # DATA (stdin was refused before anything ran, resize has no use), RST_STREAM and
        # flow control need nothing.

    async def write(self, channel: int, data: bytes) -> None:
        stream_id = self._streams.get(channel)
        if stream_id is None:
            return  # the client did not ask for this stream
        for start in range(0, len(data), MESSAGE_CHUNK):
            self._send(self.framer.data(stream_id, data[start : start + MESSAGE_CHUNK]))
            transport = self.request.transport
            while transport is not None and transport.get_write_buffer_size() > _HIGH_WATER:
                if transport.is_closing():
                    raise ConnectionResetError("exec client went away")
                await asyncio.sleep(0.01)

    async def finish(self, status: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError):
            await self.write(ERROR, json.dumps(status, separators=(",", ":")).encode())
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            for stream_id in self._streams.values():
                self._send(self.framer.data(stream_id, b"", fin=True))
            self._send(self.framer.goaway(self._last_stream))
        transport = self.request.transport
        if transport is not None:
            transport.close()
        self.closed_by_client.set()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
