"""A lean HTTP/1.1 client for the API server's small JSON requests: keep-alive TLS connections,
one request at a time on each, the response read by a protocol callback.

Why not aiohttp for these: at 1000 devices the gateway sends ~100 lease renewals a second, and
aiohttp's per-request machinery (URL objects, request and response objects, timeout handles,
payload writers) cost more CPU than the TLS and the JSON together. This path builds the request
as bytes and parses only the status line, the few headers that frame the body, and the body.
Watches (streamed answers) stay on aiohttp.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

# Largest header block accepted: an API server's answer headers are a few hundred bytes.
MAX_HEADER_BYTES = 64 * 1024


class HttpConnectionError(ConnectionError):
    """The connection failed or the server's answer was not HTTP/1.1 as expected."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    head: str  # the header lines, as received (parsed only when `headers` is asked for)
    body: bytes

    @functools.cached_property
    def headers(self) -> dict[str, str]:
        """Lower-case names; a repeated header keeps its last value."""
        return _header_fields(self.head)


def _header_fields(head: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


# The three headers that frame a body, found in the lower-cased header block at once: the API
# server sends seven or so others (audit id, priority-level uids, date, ...) that no request
# here reads, ~100 times a second at 1000 devices.
_FRAMING = re.compile(r"^(content-length|transfer-encoding|connection)[ \t]*:(.*)$", re.MULTILINE)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight, its answer assembled as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._head: tuple[int, str, str, bool] | None = None  # status, reason, head, close
        self._body_at = 0  # where the body starts in the buffer
        self._length: int | None = None  # Content-Length; None: chunked or until close
        self._chunked: _Dechunker | None = None
        self.answered = False  # some of the answer to the current request has arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, yet has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._head is not None and self._length is None and self._chunked is None:
                self._finish(bytes(self._buffer[self._body_at :]))  # body ends at close
            else:
                waiter.set_exception(HttpConnectionError(f"connection closed: {exc or 'EOF'}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes or fails the request

    def send(self, data: bytes) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None and self._waiter is None
        self._buffer.clear()
        self._head = None
        self.answered = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server speaking out of turn
            self.abort()
            return
        self.answered = True
        self._buffer += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            if not self._waiter.done():
                self._waiter.set_exception(HttpConnectionError(f"malformed answer: {exc}"))
            self.abort()

    def _parse(self) -> None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    raise ValueError("header block too large")
                return
            status_line, _, head = bytes(self._buffer[:end]).decode("latin-1").partition("\r\n")
            version, status, *reason = status_line.split(" ", 2)
            if not version.startswith("HTTP/1."):
                raise ValueError(f"status line {status_line!r}")
            framing = {
                name: value.strip().lower() for name, value in _FRAMING.findall(head.lower())
            }
            close = framing.get("connection") == "close"
            self._head = (int(status), reason[0] if reason else "", head, close)
            self._body_at = end + 4
            chunked = "chunked" in framing.get("transfer-encoding", "")
            self._chunked = _Dechunker(self._body_at) if chunked else None
            length = framing.get("content-length")
            self._length = int(length) if length is not None and not chunked else None
        if self._length is not None:
            if len(self._buffer) - self._body_at >= self._length:
                self._finish(bytes(self._buffer[self._body_at : self._body_at + self._length]))
        elif self._chunked is not None:
            body = self._chunked.feed(self._buffer)
            if body is not None:
                self._finish(body)

    def _finish(self, body: bytes) -> None:
        assert self._head is not None and self._waiter is not None
        status, reason, head, close = self._head
        waiter, self._waiter = self._waiter, None
        if close or (self._length is None and self._chunked is None):
            self.abort()
        if not waiter.done():
            waiter.set_result(HttpResponse(status, reason, head, body))

    def time_out(self, after: float) -> None:
        """No (whole) answer in time: the request fails with TimeoutError, the connection is
        closed (a late answer must not be taken for the next request's)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError(f"no answer within {after:.0f} s"))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Dechunker:
    """A chunked body, decoded as its bytes arrive (each byte looked at once)."""

    def __init__(self, start: int) -> None:
        self.at = start  # the next chunk's size line in the buffer
        self.body = bytearray()

    def feed(self, buffer: bytearray) -> bytes | None:
        """The whole body once the last chunk is in; None while more is to come."""
        while True:
            line_end = buffer.find(b"\r\n", self.at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[self.at : line_end]).split(b";", 1)[0], 16)
            data_at = line_end + 2
            if size == 0:
                # Trailers (none expected) end with an empty line.
                return bytes(self.body) if buffer.find(b"\r\n", data_at) >= 0 else None
            if len(buffer) < data_at + size + 2:
                return None
            self.body += buffer[data_at : data_at + size]
            self.at = data_at + size + 2


class Http1Pool:
    """Keep-alive connections to one server, at most `limit` at once; requests wait for one."""

    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext | None,
        limit: int = 64,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")  # an API server behind a path (a proxy)
        self._ssl = ssl_context if parts.scheme == "https" else None
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if parts.scheme == "https" else 80
        self._host_header = netloc if self.port == default_port else f"{netloc}:{self.port}"
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._all: set[_Connection] = set()
        self.connections_made = 0  # figure for tests and benchmarks: keep-alive works
        # Seconds a request may take once it has a connection (connect, then send and answer).
        # Exchanges in flight are timed by one sweep a fraction of that apart, not by a timer
        # each: at 1000 devices ~100 lease renewals a second each armed and cancelled one.
        self.timeout = timeout
        self._in_flight: dict[_Connection, float] = {}  # -> the loop time it times out at
        self._sweep: asyncio.TimerHandle | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except (OSError, ssl.SSLError) as exc:
            raise HttpConnectionError(f"connect to {self.host}:{self.port}: {exc}") from exc
        self.connections_made += 1
        self._all.add(conn)
        return conn

    def _encode(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {self.prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> HttpResponse:
        """One request on an idle connection (or a new one). A kept-alive connection the server
        closed in the meantime fails before any answer: the request goes once more on a new
        connection, as the server cannot have acted on it. Once it has a connection, a request
        taking longer than `timeout` fails with TimeoutError (a cancelled one closes its
        connection too)."""
        data = self._encode(method, target, headers, body)
        async with self._slots:
            while self._idle:
                conn = self._idle.pop()
                if conn.closed:
                    self._all.discard(conn)
                    continue
                try:
                    return await self._exchange(conn, data)
                except HttpConnectionError:
                    if conn.answered:  # the server saw the request: not ours to repeat
                        raise
            return await self._exchange(await self._connect(), data)

    async def _exchange(self, conn: _Connection, data: bytes) -> HttpResponse:
        loop = asyncio.get_running_loop()
        self._in_flight[conn] = loop.time() + self.timeout
        if self._sweep is None:
            self._sweep = loop.call_later(self._sweep_every, self._time_out_late)
        try:
            response = await conn.send(data)
        except BaseException:
            conn.abort()
            self._all.discard(conn)
            raise
        finally:
            del self._in_flight[conn]
        if conn.closed:
            self._all.discard(conn)
        else:
            self._idle.append(conn)
        return response

    @property
    def _sweep_every(self) -> float:
        return min(1.0, self.timeout / 10)

    def _time_out_late(self) -> None:
        """Fail the exchanges past their time (their connections are closed); again a sweep
        later while any is in flight."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn, deadline in list(self._in_flight.items()):
            if now >= deadline:
                conn.time_out(self.timeout)
        if self._in_flight:
            self._sweep = loop.call_later(self._sweep_every, self._time_out_late)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in self._all:
            conn.abort()
        self._all.clear()
        self._idle.clear()
