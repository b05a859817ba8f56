"""A device's own firmware log (DEVICE_LOG lines), one text file per node, as a kubelet host's
/var/log files are: served by the node's kubelet API under `/logs/`.

`<log root>/.firmware/<node>/firmware.log`, rotated to `firmware.log.1` at `max_bytes` (one
rotated file kept), a line each: `<RFC 3339 time> <LEVEL> [uptime <s>] <text>`. A device that
logs faster than `rate_per_s` (bursts of `burst`) has the excess dropped and counted in a line
of its own once it slows down: a chatty or hostile firmware costs bounded disk and CPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gateway.logs.timestamps import format_rfc3339nano, now_ns

log = logging.getLogger(__name__)

FIRMWARE_DIR_NAME = ".firmware"  # beside the pod directories: no `_`, never taken for one
FILE_NAME = "firmware.log"
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_RATE_PER_S = 50.0
DEFAULT_BURST = 200

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def level_name(level: int) -> str:
    return LEVELS[min(max(level, 0), len(LEVELS) - 1)]


def python_level(level: int) -> int:
    return getattr(logging, level_name(level))  # type: ignore[no-any-return]


def clean_text(text: str) -> str:
    """One line per entry, whatever the device sent (a newline or a control character)."""
    return "".join(c if c.isprintable() else " " for c in text).rstrip()


class LineBudget:
    """Token bucket: `take()` is False once the device logs faster than the budget."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self.dropped = 0  # lines refused since the last one taken

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self.dropped += 1
            return False
        self._tokens -= 1
        return True


class FirmwareLog:
    """The firmware log file of one node."""

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self.failed: OSError | None = None

    def files(self) -> list[Path]:
        """The files there are, newest first (what `/logs/` lists)."""
        return [p for p in (self.path, self.rotated) if p.is_file()]

    @property
    def rotated(self) -> Path:
        return self.path.with_name(FILE_NAME + ".1")

    def append(self, level: int, text: str, uptime_ms: int) -> None:
        uptime = f" [uptime {uptime_ms / 1000:.3f}]" if uptime_ms else ""
        line = f"{format_rfc3339nano(now_ns())} {level_name(level)}{uptime} {clean_text(text)}\n"
        self.append_line(line.encode())

    def append_dropped(self, count: int) -> None:
        line = (
            f"{format_rfc3339nano(now_ns())} WARNING {count} firmware log lines dropped: the "
            "device logged faster than the gateway keeps\n"
        )
        self.append_line(line.encode())

    def append_line(self, data: bytes) -> None:
        """Small appends, no fsync: this is a diagnostic log, not acknowledged output. A disk
        problem is logged once and the lines go to the gateway's log only."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(data) > self.max_bytes:
                self.path.replace(self.rotated)
            with self.path.open("ab") as file:
                file.write(data)
            self.failed = None
        except OSError as exc:
            if self.failed is None:
                log.error("cannot write the firmware log %s: %s", self.path, exc)
            self.failed = exc


class FirmwareLogger:
    """One device's DEVICE_LOG lines to the gateway's log and, once its node is known, to the
    node's firmware log file (lines before that are kept, up to `EARLY_LINES`)."""

    EARLY_LINES = 100

    def __init__(self, label: str, budget: LineBudget | None = None) -> None:
        self.label = label
        self.budget = budget or LineBudget(DEFAULT_RATE_PER_S, DEFAULT_BURST)
        self.file: FirmwareLog | None = None
        self._early: list[tuple[int, str, int]] = []

    def attach(self, file: FirmwareLog) -> None:
        """The node is known: its file takes the lines from now on, the early ones first."""
        if self.file is not None and self.file.path == file.path:
            return
        self.file = file
        early, self._early = self._early, []
        for entry in early:
            file.append(*entry)

    def detach(self) -> None:
        """Another device answers on this path and its node is not known yet."""
        self.file = None

    def line(self, level: int, text: str, uptime_ms: int) -> None:
        if not self.budget.take():
            return
        if self.budget.dropped:
            dropped, self.budget.dropped = self.budget.dropped, 0
            log.warning("%s: %d firmware log lines dropped (over the budget)", self.label, dropped)
            if self.file is not None:
                self.file.append_dropped(dropped)
        log.log(python_level(level), "%s: firmware: %s", self.label, clean_text(text))
        if self.file is not None:
            self.file.append(level, text, uptime_ms)
        elif len(self._early) < self.EARLY_LINES:
            self._early.append((level, text, uptime_ms))
