"""The gateway's own log, bounded: at most `burst` records of one message (logger and format
string) every `period_s`; the rest are counted, and the count rides on the next record of that
message that passes.

Logging is synchronous: a device that makes the gateway warn per frame (gaps, refusals, its own
log lines) must not fill the disk, nor stall the event loop on a slow stderr for every other
device. `-v` turns the limit off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_BURST = 100
DEFAULT_PERIOD_S = 10.0
KEYS_LIMIT = 10_000  # messages tracked; the least recently seen forgotten first


class RepeatLimit(logging.Filter):
    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.period_s = period_s
        self.clock = clock
        # (logger, format string) -> [window start, records passed in it, suppressed since]
        self._windows: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        window = self._windows.pop(key, None) or [now, 0, 0]
        self._windows[key] = window  # most recently seen last
        if len(self._windows) > KEYS_LIMIT:
            self._windows.pop(next(iter(self._windows)))
        if now - window[0] >= self.period_s:
            window[0], window[1] = now, 0
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        if window[2]:
            suppressed, window[2] = int(window[2]), 0
            record.msg = f"{record.msg} [{suppressed} more like this were not logged]"
        return True
