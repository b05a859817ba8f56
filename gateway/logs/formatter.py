"""CRI records to `kubectl logs` output, with since, timestamps and limitBytes (kubelet semantics).

Output without timestamps is the content only: F records end with a newline, P records are
output without one so the next record of the same stream continues the line. With
timestamps, each line (not each P continuation) starts with its RFC3339Nano stamp and a space.
The beginning-of-line state is kept per stream (the kubelet keeps one for both), so a stderr
line arriving in the middle of a partial stdout line still gets its own timestamp.
"""

from __future__ import annotations

import logging

from gateway.logs import blocks
from gateway.logs.cri import Stream
from gateway.logs.timestamps import parse_rfc3339

logger = logging.getLogger(__name__)


class Formatter:
    """Turns CRI records into `kubectl logs` output, applying since, timestamps and limit."""

    def __init__(self, *, timestamps: bool, since_ns: int | None, limit_bytes: int | None):
        self._timestamps = timestamps
        self._since_ns = since_ns
        self._remaining = limit_bytes
        self._at_line_start = dict.fromkeys(Stream, True)
        # Nanoseconds of the stamps seen lately: the records of one write share theirs.
        self._stamps: dict[bytes, int] = {}

    def is_exhausted(self) -> bool:
        return self._remaining is not None and self._remaining <= 0

    def format(self, block: bytes) -> bytes:
        """The output for a block of complete records (each ended by a newline)."""
        output: bytes | None = None
        if self._since_ns is not None:
            output = self.format_records(block)
        elif not self._timestamps:
            # Whole blocks in a few C-level passes (gateway.logs.blocks).
            output = blocks.content(block)
        else:
            output = self._stamped(block)
        return self.limit(output if output is not None else self.format_records(block))

    def _stamped(self, block: bytes) -> bytes:
        """With timestamps: the stretches of F records between P records as whole blocks; each
        P record, and what follows it until every stream is at a line start again (a line's
        stamp is its first record's), record by record."""
        pieces = []
        position = 0
        for start, _ in blocks.partial_records(block):
            if start < position:
                continue  # taken record by record already
            pieces.append(self._stamped_stretch(block[position:start]))
            position = start
            while position < len(block):
                end = block.index(b"\n", position) + 1
                pieces.append(self.format_records(block[position:end]))
                position = end
                if all(self._at_line_start.values()):
                    break
        pieces.append(self._stamped_stretch(block[position:]))
        return b"".join(pieces)

    def _stamped_stretch(self, stretch: bytes) -> bytes:
        if all(self._at_line_start.values()):
            output = blocks.stamped_content(stretch)
            if output is not None:
                return output
        return self.format_records(stretch)

    def limit(self, output: bytes) -> bytes:
        """`output` cut to what is left of limit_bytes (counted down)."""
        if self._remaining is None:
            return output
        output = output[: self._remaining]
        self._remaining -= len(output)
        return output

    def format_records(self, block: bytes) -> bytes:
        """Record by record: what defines the output (the block paths must agree with it)."""
        out = bytearray()
        # Only "\n" ends a record: content may hold a lone "\r" (splitlines would cut there).
        lines = block.split(b"\n")
        lines.pop()  # empty: the block ends with a newline
        for line in lines:
            fields = line.split(b" ", 3)
            stream = _STREAMS.get(fields[1]) if len(fields) >= 3 else None
            stamp = self._stamp_ns(fields[0]) if stream is not None else None
            if stream is None or stamp is None:
                logger.debug("skipping malformed log record %r", line[:80])
                continue
            if self._since_ns is not None and stamp < self._since_ns:
                continue
            # The tag field may carry several ':'-separated tags; only P/F is defined today.
            partial = b"P" in fields[2].split(b":")
            content = fields[3] if len(fields) == 4 else b""
            if self._timestamps and self._at_line_start[stream]:
                # As written: the writer stamps in the format --timestamps shows.
                out += fields[0] + b" "
            out += content
            if not partial:
                out += b"\n"
            self._at_line_start[stream] = not partial
        return bytes(out)

    def _stamp_ns(self, stamp: bytes) -> int | None:
        """The stamp in nanoseconds, None if it is not an RFC3339 time."""
        ns = self._stamps.get(stamp)
        if ns is None:
            try:
                ns = parse_rfc3339(stamp)
            except ValueError:
                return None
            if len(self._stamps) >= _STAMP_CACHE_SIZE:
                self._stamps.clear()
            self._stamps[stamp] = ns
        return ns


_STREAMS = {stream.value.encode(): stream for stream in Stream}
# Distinct stamps remembered per read (a block holds a few hundred: one per write).
_STAMP_CACHE_SIZE = 4096
