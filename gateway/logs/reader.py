"""Read a container's CRI log files back the way `kubectl logs` expects (kubelet semantics).

Output without timestamps is the content only: F records end with a newline, P records are
output without one so the next record of the same stream continues the line. With
timestamps, each line (not each P continuation) starts with its RFC3339Nano stamp and a space.
The beginning-of-line state is kept per stream (the kubelet keeps one for both), so a stderr
line arriving in the middle of a partial stdout line still gets its own timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.logs import layout
from gateway.logs.changes import ChangeSignal
from gateway.logs.errors import LogNotFound
from gateway.logs.formatter import Formatter
from gateway.logs.tail import find_tail_start

logger = logging.getLogger(__name__)

# How often `follow` looks for new bytes, rotation and termination when the source has no
# change signal (a log written by another process). Files are local and the check is one read
# and one stat, so a short interval costs little.
DEFAULT_POLL_INTERVAL = 0.1
# With a change signal, new bytes, rotation and the writer's close wake the follower at once;
# this slower re-check only notices what no writer announces (the server stopping, the client
# gone, a container that ended without output).
SIGNALLED_RECHECK_INTERVAL = 0.5
# Large reads: a whole-log fetch costs one thread hop and one formatting pass per read.
_READ_SIZE = 1024 * 1024
# A follower's read on the event loop (see _drain): lines that just arrived.
_FOLLOW_READ_SIZE = 64 * 1024
# Reads of a content file (gateway.logs.content): copied as they are.
_CONTENT_READ_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogSource:
    """Where one container's logs are and whether it is still producing them."""

    container_dir: Path
    # Restart count of the current (latest) instance; `previous` reads restart - 1.
    restart: int
    # Follow ends once this reports False and the file is drained.
    is_running: Callable[[], Awaitable[bool]]
    # Announces writes, rotation and close of this container's files (gateway.logs.changes);
    # None: follow polls.
    changes: ChangeSignal | None = None


async def read_logs(
    source: LogSource,
    *,
    tail_lines: int | None = None,
    since_ns: int | None = None,
    timestamps: bool = False,
    limit_bytes: int | None = None,
    follow: bool = False,
    previous: bool = False,
    stop: Callable[[], bool] | None = None,
    poll_interval: float | None = None,
    announce_ready: bool = False,
) -> AsyncGenerator[bytes, None]:
    """Yield the log of `source` as chunks of bytes.

    Raises LogNotFound for `previous` when there is no earlier instance with a log. Follow
    (ignored with `previous`: that instance has terminated) ends when the container stops
    and the file is drained, when `stop()` returns True (checked on every wake-up and at
    least every `poll_interval`: server shutdown, client gone), or when the consumer stops
    iterating. A follower is woken by the source's change signal when there is one, and
    polls every `poll_interval` otherwise.
    Consumers that may stop early should use `contextlib.aclosing` so the files close.
    With `announce_ready` the first chunk is b"" once the files are open and the start is
    found: a server sends its response headers only then, so a line written after the client
    saw them is never skipped by `tailLines=0`.
    """
    restart = source.restart - 1 if previous else source.restart
    paths = layout.instance_log_files(source.container_dir, restart) if restart >= 0 else []
    if previous and not paths:
        raise LogNotFound(f"no log of a previous instance in {source.container_dir}")
    formatter = Formatter(timestamps=timestamps, since_ns=since_ns, limit_bytes=limit_bytes)
    if poll_interval is None:
        poll_interval = (
            DEFAULT_POLL_INTERVAL if source.changes is None else SIGNALLED_RECHECK_INTERVAL
        )
    cursors = await asyncio.to_thread(_open_all, paths)
    try:
        start_index, start_offset = 0, 0
        if tail_lines is not None:
            sizes = [(c.fd, c.size) for c in cursors]
            start_index, start_offset = await asyncio.to_thread(find_tail_start, sizes, tail_lines)
        if announce_ready:
            yield b""
        current_path = layout.current_log_file(source.container_dir, restart)
        for index in range(start_index, len(cursors)):
            cursor = cursors[index]
            cursor.offset = start_offset if index == start_index else 0
            # A whole rotated file without options: its content file, if written, as it is.
            plain = cursor.offset == 0 and not timestamps and since_ns is None
            # Closed here, not left to the garbage collector: a read ahead must finish before
            # the files are closed below.
            read = _read_file(cursor, formatter, plain and cursor.path != current_path)
            async with contextlib.aclosing(read) as chunks:
                async for chunk in chunks:
                    yield chunk
            if formatter.is_exhausted():
                return
        if follow and not previous:
            live = cursors[-1] if cursors and cursors[-1].path == current_path else None
            async for chunk in _follow(
                source,
                current_path,
                live,
                formatter,
                stop=stop,
                poll_interval=poll_interval,
            ):
                yield chunk
    finally:
        for cursor in cursors:
            cursor.close()


async def _follow(  # noqa: PLR0912 (the follow loop: drain, rotation, stop and wait in one place, in order)
    source: LogSource,
    path: Path,
    cursor: _Cursor | None,
    formatter: Formatter,
    *,
    stop: Callable[[], bool] | None,
    poll_interval: float,
) -> AsyncIterator[bytes]:
    opened: list[_Cursor] = []  # cursors this function opened and must close
    signal = source.changes
    try:
        while not formatter.is_exhausted():
            if stop is not None and stop():
                return
            # Taken before reading: a write after this point moves it on and wakes us below.
            seen = signal.generation if signal is not None else 0
            # Ask before reading: if it has stopped, everything it wrote is already on disk.
            running = await source.is_running()
            progressed = False
            if cursor is not None:
                async with contextlib.aclosing(_drain(cursor, formatter, follow=True)) as drained:
                    async for chunk in drained:
                        progressed = True
                        yield chunk
            if formatter.is_exhausted():
                return
            replacement = _reopen_if_rotated(path, cursor)
            if replacement is not None:
                if cursor is not None:
                    # The writer renamed it away; collect what landed before the rename.
                    async with contextlib.aclosing(
                        _drain(cursor, formatter, follow=True)
                    ) as drained:
                        async for chunk in drained:
                            yield chunk
                opened.append(replacement)
                cursor = replacement
                continue
            if not running:
                if progressed:
                    continue  # one more read that finds nothing ends the follow
                return
            if progressed and (signal is None or signal.generation != seen):
                # More may have come meanwhile: read again. With a signal that has not moved
                # since before the read, nothing has, and the follower waits at once.
                continue
            if signal is not None:
                await signal.wait_past(seen, poll_interval)
            else:
                await asyncio.sleep(poll_interval)
    finally:
        for own in opened:
            own.close()


async def _drain(
    cursor: _Cursor, formatter: Formatter, *, follow: bool = False
) -> AsyncGenerator[bytes, None]:
    """Format and yield every complete record from the cursor's offset to end of file.

    A follower's first read is done on the event loop: it reads what the writer has just
    written, from the page cache, in microseconds, where a hop to a worker thread and back
    costs two scheduling waits on a busy host for every line. A backlog larger than that read
    goes on in worker threads."""
    size = _FOLLOW_READ_SIZE if follow else _READ_SIZE
    if follow:
        read, output = _read_and_format(cursor, formatter, size)
        if output:
            yield output
        if read < size:
            return  # the end of the file, as of this read
        size = _READ_SIZE
    # Read and format in worker threads: a fetch of a large log does not hold the event loop
    # for the formatting of each megabyte (other devices' output keeps flowing). The next
    # block is read and formatted while the consumer sends this one.
    ahead: asyncio.Future[tuple[int, bytes]] | None = None
    try:
        while not formatter.is_exhausted():
            if ahead is None:
                ahead = _read_ahead(cursor, formatter, size)
            read, output = await ahead
            ahead = None
            if read < size:
                if output:
                    yield output
                return  # the end of the file, as of this read
            if not formatter.is_exhausted():
                ahead = _read_ahead(cursor, formatter, size)
            if output:
                yield output
    finally:
        if ahead is not None:
            # It reads the cursor's file: done before the caller may close it.
            with contextlib.suppress(Exception):
                await asyncio.shield(ahead)


def _read_ahead(
    cursor: _Cursor, formatter: Formatter, size: int
) -> asyncio.Future[tuple[int, bytes]]:
    return asyncio.ensure_future(asyncio.to_thread(_read_and_format, cursor, formatter, size))


async def _read_file(
    cursor: _Cursor, formatter: Formatter, from_content: bool
) -> AsyncGenerator[bytes, None]:
    """One file from the cursor's offset: its content file as it is (`from_content`, when one
    was written: gateway.logs.content), else its records formatted."""
    content_fd = await asyncio.to_thread(_open_content, cursor.path) if from_content else None
    if content_fd is None:
        async with contextlib.aclosing(_drain(cursor, formatter)) as drained:
            async for chunk in drained:
                yield chunk
        return
    try:
        offset = 0
        while not formatter.is_exhausted():
            data = await asyncio.to_thread(os.pread, content_fd, _CONTENT_READ_SIZE, offset)
            if not data:
                return
            offset += len(data)
            yield formatter.limit(data)
    finally:
        os.close(content_fd)


def _open_content(rotated: Path) -> int | None:
    try:
        return os.open(layout.content_file(rotated), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _read_and_format(cursor: _Cursor, formatter: Formatter, size: int) -> tuple[int, bytes]:
    """Read up to `size` bytes at the cursor: (bytes read, the output of the complete records
    read so far)."""
    data = os.pread(cursor.fd, size, cursor.offset)
    if not data:
        return 0, b""
    read = len(data)
    cursor.offset += read
    if cursor.remainder:
        data = bytes(cursor.remainder) + data
        cursor.remainder.clear()
    last_newline = data.rfind(b"\n")
    if last_newline + 1 < len(data):
        # A record still being written: kept until the rest of it is read.
        cursor.remainder += data[last_newline + 1 :]
        data = data[: last_newline + 1]
    return read, formatter.format(data) if data else b""


class _Cursor:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.inode = os.fstat(fd).st_ino
        self.offset = 0
        # Bytes read but not yet ended by a newline (a record still being written).
        self.remainder = bytearray()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def previous_log_exists(source: LogSource) -> bool:
    """Whether `read_logs(source, previous=True)` has anything to read (checked up front so a
    server can answer 400 before it starts a response)."""
    restart = source.restart - 1
    return restart >= 0 and bool(layout.instance_log_files(source.container_dir, restart))


def _open_all(paths: list[Path]) -> list[_Cursor]:
    cursors = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # pruned by the writer between listing and opening
        cursors.append(_Cursor(path, fd))
    return cursors


def _reopen_if_rotated(path: Path, cursor: _Cursor | None) -> _Cursor | None:
    """A cursor on the file now at `path` if it is not the one `cursor` reads, else None.

    Called on the event loop after each follow read: a stat of a file the writer just
    touched (its inode is cached) costs microseconds; only a rotation opens a file."""
    try:
        if cursor is not None and os.stat(path).st_ino == cursor.inode:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # rotated away and nothing new written yet
    if cursor is not None and os.fstat(fd).st_ino == cursor.inode:
        os.close(fd)
        return None
    return _Cursor(path, fd)
