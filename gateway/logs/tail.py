"""Find where the last N lines of a container instance's log start, scanning backwards.

A "line" is what the user sees: a run of P records ended by an F record, plus a trailing run
of P records that no F has ended yet. Counting records instead (as the kubelet does) would
start `--tail` in the middle of a long line. Files are scanned from the end in blocks, so the
cost follows the size of the tail, not of the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from gateway.logs.cri import record_is_partial

_BLOCK = 64 * 1024


def find_tail_start(files: Sequence[tuple[int, int]], lines: int) -> tuple[int, int]:
    """(file index, byte offset) where the last `lines` lines begin.

    `files` holds (fd, size) pairs, oldest first; sizes are a snapshot so that concurrent
    appends do not move the goalposts.
    """
    if not files:
        return 0, 0
    if lines <= 0:
        return len(files) - 1, files[-1][1]
    counted = 0
    last_record = True
    for index in range(len(files) - 1, -1, -1):
        fd, size = files[index]
        for end, line in _lines_backward(fd, size):
            if not record_is_partial(line) or last_record:
                counted += 1
                if counted > lines:
                    return index, end
            last_record = False
    return 0, 0


def _lines_backward(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """Complete lines of a file, last first, as (offset just past the line, line bytes).

    Bytes after the last newline are an unfinished write and are ignored, as the forward
    reader ignores them.
    """
    pos = size
    pending = b""  # the already-read beginning bytes of the line being assembled
    line_end: int | None = None  # absolute offset just past the line being assembled
    while pos > 0:
        read_start = max(0, pos - _BLOCK)
        chunk = os.pread(fd, pos - read_start, read_start)
        data = chunk + pending
        search_to = len(chunk)
        while True:
            newline = data.rfind(b"\n", 0, search_to)
            if newline < 0:
                break
            if line_end is not None:
                yield line_end, data[newline + 1 : line_end - read_start]
            line_end = read_start + newline + 1
            search_to = newline
        pos = read_start
        pending = data[: line_end - read_start] if line_end is not None else b""
    if line_end is not None:
        yield line_end, pending
