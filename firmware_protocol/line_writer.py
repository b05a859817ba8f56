"""The bytes a link end has for its transport, and when the last of them will have left the line.

On a line of known rate (a UART: baud / 10 bytes per second) frames queue behind each other; the
link times retransmissions and RTT samples from when a frame has left, not from when it was
handed over (PROTOCOL.md section 6). With the rate unknown (0: USB, or fast), a frame counts as
gone when written.
"""

from __future__ import annotations

from .link_config import LinkStats


class LineWriter:
    """``now``: the latest time an input gave the link; frames written are stamped from it."""

    def __init__(self, line_rate: float, stats: LinkStats) -> None:
        self.now = 0.0
        self._line_rate = line_rate
        self._stats = stats
        self._out = bytearray()
        self._free_at = 0.0

    @property
    def pending(self) -> bool:
        """True if bytes wait for the transport."""
        return bool(self._out)

    def write(self, data: bytes) -> float:
        """Queue one frame's wire bytes; returns when its last byte will have left the line
        (now, if the line rate is unknown)."""
        self._stats.frames_sent += 1
        self._stats.bytes_sent += len(data)
        self._out += data
        if self._line_rate <= 0:
            return self.now
        self._free_at = max(self._free_at, self.now) + len(data) / self._line_rate
        return self._free_at

    def take(self) -> bytes:
        """The bytes to write to the transport; the buffer is empty afterwards."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def reset(self, now: float) -> None:
        """A new connection: bytes of the old one are dropped and the line is free now."""
        self.now = self._free_at = now
        self._out.clear()
