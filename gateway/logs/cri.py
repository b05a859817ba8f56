"""One line of a CRI container log file: `<timestamp> <stream> <tag> <content>\\n`.

This is the format the kubelet's runtimes (containerd, CRI-O) write under /var/log/pods and
that log shippers (fluent-bit, vector, promtail) parse. The tag is `F` for a full line and
`P` for a partial one that the next record of the same stream continues.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.logs.timestamps import format_rfc3339nano, parse_rfc3339


class Stream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class Tag(enum.StrEnum):
    FULL = "F"
    PARTIAL = "P"


@dataclass(frozen=True, slots=True)
class CriRecord:
    timestamp_ns: int
    stream: Stream
    tag: Tag
    content: bytes  # without the record's trailing newline

    @property
    def partial(self) -> bool:
        return self.tag is Tag.PARTIAL

    def to_bytes(self) -> bytes:
        return record_header(self.timestamp_ns, self.stream, self.tag) + self.content + b"\n"


def encode_record(timestamp_ns: int, stream: Stream, tag: Tag, content: bytes) -> bytes:
    return CriRecord(timestamp_ns, stream, tag, content).to_bytes()


def record_header(timestamp_ns: int, stream: Stream, tag: Tag) -> bytes:
    """`<timestamp> <stream> <tag> `: what precedes the content of such a record."""
    return f"{format_rfc3339nano(timestamp_ns)} {stream} {tag} ".encode()


def parse_record(line: bytes) -> CriRecord:
    """Parse one record, with or without its trailing newline. Raises ValueError if malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"not a CRI log record: {line[:64]!r}")
    timestamp_ns = parse_rfc3339(parts[0])
    try:
        stream = Stream(parts[1].decode())
    except ValueError:
        raise ValueError(f"unknown stream in CRI log record: {parts[1][:16]!r}") from None
    # The tag field may carry several ':'-separated tags; only P/F is defined today.
    tag = Tag.PARTIAL if b"P" in parts[2].split(b":") else Tag.FULL
    content = parts[3] if len(parts) == 4 else b""
    return CriRecord(timestamp_ns, stream, tag, content)


def record_is_partial(line: bytes) -> bool:
    """Cheap tag check used when scanning backwards; a malformed record counts as full."""
    parts = line.split(b" ", 3)
    return len(parts) >= 3 and b"P" in parts[2].split(b":")
