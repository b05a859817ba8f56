"""RFC3339Nano timestamps as Go's `time.RFC3339Nano` writes them, on integer nanoseconds.

Integer nanoseconds since the epoch keep the full precision the CRI format carries (a
`datetime` would cut it to microseconds) and compare cheaply when filtering by time.
"""

from __future__ import annotations

import calendar
import re
import time

NANOS_PER_SECOND = 1_000_000_000

_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    rb"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def now_ns() -> int:
    """Wall clock in nanoseconds since the epoch (the stamp of a log line)."""
    return time.time_ns()


def format_rfc3339nano(ns: int) -> str:
    """Format as UTC like Go's RFC3339Nano: fraction with trailing zeros trimmed, `Z` zone."""
    seconds, fraction = divmod(ns, NANOS_PER_SECOND)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction == 0:
        return base + "Z"
    return f"{base}.{fraction:09d}".rstrip("0") + "Z"


def parse_rfc3339(text: str | bytes) -> int:
    """Parse an RFC3339 timestamp (any fraction length, any offset) to UTC nanoseconds.

    Raises ValueError for anything else.
    """
    raw = text.encode() if isinstance(text, str) else text
    match = _RFC3339.match(raw)
    if match is None:
        raise ValueError(f"not an RFC3339 timestamp: {raw[:64]!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or b""
    nanos = int(fraction.ljust(9, b"0")) if fraction else 0
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(9) is not None:
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == b"+" else -offset
    return seconds * NANOS_PER_SECOND + nanos


def format_rotation_suffix(ns: int) -> str:
    """The `YYYYMMDD-HHMMSS` UTC suffix the kubelet gives rotated log files."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(ns // NANOS_PER_SECOND))
