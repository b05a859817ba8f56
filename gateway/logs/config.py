"""Settings of the container log store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The kubelet's defaults: containerLogMaxSize=10Mi, containerLogMaxFiles=5 (which counts the
# current file, so 4 rotated ones), and containerd's 16 KiB maximum line before splitting.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ROTATED_FILES = 4
DEFAULT_PARTIAL_LINE_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class LogConfig:
    root: Path
    # Rotate the current file before a write would take it past this size.
    max_bytes: int = DEFAULT_MAX_BYTES
    # Rotated files kept per container instance; older ones are deleted.
    max_rotated_files: int = DEFAULT_MAX_ROTATED_FILES
    # An unterminated line longer than this is written out as a P record of this size.
    partial_line_limit: int = DEFAULT_PARTIAL_LINE_LIMIT
    # One fdatasync per flush() so acknowledged device output survives a power cut.
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.partial_line_limit <= 0 or self.max_rotated_files < 0:
            raise ValueError("log sizes must be positive and max_rotated_files non-negative")
