"""SPDY/3.1 framing, sans I/O: what API servers before 1.36 (or with ExtendWebSocketsToKubelet
off, or a client that forces SPDY) speak to a kubelet for exec and attach.

Only what a kubelet's streaming server needs: the peer opens streams (SYN_STREAM), we answer
them (SYN_REPLY), send DATA (with FIN to end a stream), answer PING, and say GOAWAY. Header
blocks are compressed with one zlib stream per direction primed with the SPDY/3 dictionary.
Flow control (WINDOW_UPDATE) is read and ignored: a kubelet's answers are far below the
initial 64 KiB window per stream, and the peers in question (Go's spdystream) do not enforce it.

    framer = SpdyFramer()
    for frame in framer.receive(data): ...       # SynStream, Data, Ping, RstStream, GoAway, ...
    transport.write(framer.syn_reply(stream_id))
    transport.write(framer.data(stream_id, b"...", fin=True))
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
FLAG_FIN = 0x01
# A frame larger than this is a protocol error here (no peer of ours sends more than 64 KiB).
MAX_FRAME = 1 << 20

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1): these
# words, each preceded by its length as a 32-bit big-endian number, then a run of plain text.
_WORDS = (
    *[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
    ],
    *("200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"),
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, "
    "Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivate"
    "max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SpdyError(ValueError):
    """The peer sent something that is not SPDY/3.1 as we understand it."""


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Mapping[str, str]
    fin: bool


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_stream_id: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY, unknown types: nothing to do for a kubelet."""

    frame_type: int


Frame = SynStream | Data | RstStream | Ping | GoAway | Ignored


class SpdyFramer:
    """One connection's framing state: the buffer and both header-compression streams."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    # --- reading ------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Frame]:
        """The complete frames `data` finishes (the rest is kept for the next call)."""
        self._buffer += data
        return list(self._frames())

    def _frames(self) -> Iterator[Frame]:
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if length > MAX_FRAME:
                raise SpdyError(f"frame of {length} bytes is larger than {MAX_FRAME}")
            if len(self._buffer) < 8 + length:
                return
            head, payload = bytes(self._buffer[:8]), bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            flags = head[4]
            if head[0] & 0x80:
                version = int.from_bytes(head[0:2], "big") & 0x7FFF
                if version != VERSION:
                    raise SpdyError(f"SPDY version {version}, expected {VERSION}")
                yield self._control(int.from_bytes(head[2:4], "big"), flags, payload)
            else:
                stream_id = int.from_bytes(head[0:4], "big") & 0x7FFFFFFF
                yield Data(stream_id, payload, bool(flags & FLAG_FIN))

    def _control(self, frame_type: int, flags: int, payload: bytes) -> Frame:
        if frame_type == SYN_STREAM:
            _need(payload, 10, "SYN_STREAM")
            stream_id = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
            return SynStream(stream_id, self._headers(payload[10:]), bool(flags & FLAG_FIN))
        if frame_type in (SYN_REPLY, HEADERS):
            _need(payload, 4, "SYN_REPLY/HEADERS")
            self._headers(payload[4:])  # keeps the shared decompression stream in step
            return Ignored(frame_type)
        if frame_type == RST_STREAM:
            _need(payload, 8, "RST_STREAM")
            stream_id, status = struct.unpack(">II", payload[:8])
            return RstStream(stream_id & 0x7FFFFFFF, status)
        if frame_type == PING:
            _need(payload, 4, "PING")
            return Ping(struct.unpack(">I", payload[:4])[0])
        if frame_type == GOAWAY:
            _need(payload, 4, "GOAWAY")
            return GoAway(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF)
        return Ignored(frame_type)

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise SpdyError(f"header block does not decompress: {exc}") from None
        headers: dict[str, str] = {}
        _need(raw, 4, "header block")
        count = struct.unpack(">I", raw[:4])[0]
        at = 4
        for _ in range(count):
            name, at = _string(raw, at)
            value, at = _string(raw, at)
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        return headers

    # --- writing ------------------------------------------------------------------------------

    def syn_reply(self, stream_id: int, headers: Mapping[str, str] | None = None) -> bytes:
        return _control(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._block(headers or {}))

    def data(self, stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
        if len(data) > 0xFFFFFF:
            raise ValueError("data frame too large; split it")
        flags = FLAG_FIN if fin else 0
        return struct.pack(">IB", stream_id, flags) + len(data).to_bytes(3, "big") + data

    def ping(self, ping_id: int) -> bytes:
        return _control(PING, 0, struct.pack(">I", ping_id))

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))

    def syn_stream(self, stream_id: int, headers: Mapping[str, str], *, fin: bool = False) -> bytes:
        """A client's stream opening (for tests and tools; a kubelet never opens streams)."""
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._block(headers)
        return _control(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    def _block(self, headers: Mapping[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            for text in (name.lower().encode("latin-1"), value.encode("latin-1")):
                raw += struct.pack(">I", len(text)) + text
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    return (
        struct.pack(">HHB", 0x8000 | VERSION, frame_type, flags)
        + len(payload).to_bytes(3, "big")
        + payload
    )


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise SpdyError(f"{what} of {len(payload)} bytes, expected at least {size}")


def _string(raw: bytes, at: int) -> tuple[bytes, int]:
    _need(raw[at:], 4, "header length")
    length = struct.unpack(">I", raw[at : at + 4])[0]
    end = at + 4 + length
    if end > len(raw):
        raise SpdyError("header block ends inside a name or value")
    return raw[at + 4 : end], end
