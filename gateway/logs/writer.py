"""Append a container's output to its CRI log file, durably, with size rotation.

Threading model (measured, see docs/logs.md): `write()` is called on the event loop and
only splits bytes into records in memory, which takes microseconds. `flush()` does the disk
I/O (os.write, rename on rotation, fdatasync) in a worker thread via asyncio.to_thread,
because one fdatasync costs 0.1-20 ms depending on the disk and would stall every device.

Ordering: the worker takes the pending records and writes them while holding `_io_lock`,
so whichever flush (or publish) runs first writes everything queued before it, in order. A
flush whose caller is cancelled still completes in its thread, and no later flush can overtake
it. The fdatasync runs after `_io_lock` is released, so records that arrive meanwhile can be
written (`publish()`) and read without waiting for it; a flush returns only once a sync that
began after its own write has completed.

After a rotation, a background task writes the rotated file's content file
(gateway.logs.content); `close()` waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.logs import content, layout, offsets
from gateway.logs.changes import ChangeSignal
from gateway.logs.config import LogConfig
from gateway.logs.cri import Stream, Tag, encode_record, record_header
from gateway.logs.errors import LogWriterClosed
from gateway.logs.timestamps import format_rotation_suffix, now_ns

logger = logging.getLogger(__name__)

_CR = ord("\r")
_FILE_MODE = 0o640
_OPEN_FLAGS = (
    os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
)  # RDWR: pread the last byte to spot a torn record


class ContainerLogWriter:
    """Writes one container instance's (one restart count's) log file."""

    def __init__(
        self,
        container_dir: Path,
        restart: int,
        config: LogConfig,
        *,
        clock: Callable[[], int] = now_ns,
        changes: ChangeSignal | None = None,
    ) -> None:
        self.container_dir = container_dir
        self.restart = restart
        self._config = config
        self._clock = clock
        # Followers of this container's log, woken when bytes land (gateway.logs.changes).
        self._changes = changes
        # Loop-thread state: the unterminated tail of each stream.
        self._partial: dict[Stream, bytearray] = {s: bytearray() for s in Stream}
        # Device offset just after the last byte written to each stream (when given), so the
        # offset at which each record ends is known.
        self._stream_end: dict[Stream, int] = {}
        # Records waiting for the next flush, each with its stream and the device offset its
        # last byte ends at (None when not tracked); shared with the worker under _buffer_lock.
        self._pending: list[tuple[bytes, Stream, int | None]] = []
        self._buffer_lock = threading.Lock()
        # Worker-thread state, guarded by _io_lock.
        self._io_lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._closed = False
        # Device offsets the file holds (None: not read from the offsets record yet), and
        # whether offsets are kept at all (a write gave one).
        self._on_disk: dict[str, int] | None = None
        self._tracking = False
        # Whether this writer has synced the file once. The first flush syncs it even with
        # nothing new: a previous gateway process may have written it without the sync, and
        # output is acknowledged as on disk on the strength of what the file holds.
        self._synced = False
        # Records written (by `publish` or a flush) that no completed sync covers yet.
        self._written_unsynced = False
        # A publish that failed: every later flush fails with it (its records are lost).
        self._publish_error: OSError | None = None
        # Rotated files whose content file (gateway.logs.content) is still to be written, and
        # the task writing them (off the flush path: acknowledgements do not wait for it).
        self._rotated: list[Path] = []
        self._content_job: asyncio.Task[None] | None = None
        self._contents_checked = False  # rotated files without content looked for (first open)

    @property
    def path(self) -> Path:
        return layout.current_log_file(self.container_dir, self.restart)

    # ---- loop side ---------------------------------------------------------------------

    def write(self, stream: Stream, data: bytes, *, end: int | None = None) -> None:
        """Queue a chunk of output; complete lines become F records, nothing touches disk.

        `end`: the device's offset just after `data` in this stream. Given, the writer keeps
        the `<restart>.offsets` record (gateway.logs.offsets) in step with the file."""
        if self._closed:
            raise LogWriterClosed(f"write to closed log {self.path}")
        if not data:
            return
        buffer = self._partial[stream]
        buffer += data
        base: int | None = None  # device offset of buffer[0]
        if end is not None:
            self._tracking = True
            self._stream_end[stream] = end
            base = end - len(buffer)
        timestamp = self._clock()
        limit = self._config.partial_line_limit
        records: list[tuple[bytes, Stream, int | None]] = []

        def ending_at(stop: int) -> int | None:
            return None if base is None else base + stop

        # One header for every record of this chunk (they share its arrival time): formatting
        # a stamp per line cost more than everything else the loop does for device output.
        full_header = record_header(timestamp, stream, Tag.FULL)
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            # Serial consoles end lines with CRLF; the CR is line-ending noise, not content.
            stop = newline - 1 if newline > start and buffer[newline - 1] == _CR else newline
            if stop - start <= limit:
                record = full_header + buffer[start:stop] + b"\n"
                records.append((record, stream, ending_at(newline + 1)))
            else:
                parts = _split_line(timestamp, stream, bytes(buffer[start:stop]), limit)
                for index, record in enumerate(parts[:-1]):
                    records.append((record, stream, ending_at(start + (index + 1) * limit)))
                records.append((parts[-1], stream, ending_at(newline + 1)))
            start = newline + 1
        # An unterminated line that grows past the limit goes out as P records now.
        while len(buffer) - start >= limit:
            chunk = bytes(buffer[start : start + limit])
            start += limit
            record = encode_record(timestamp, stream, Tag.PARTIAL, chunk)
            records.append((record, stream, ending_at(start)))
        del buffer[:start]
        if records:
            with self._buffer_lock:
                self._pending.extend(records)

    def recorded_offsets(self) -> dict[str, int]:
        """Device offsets the log holds, per stream, from the offsets record (a log continued
        after a gateway restart: output re-sent below them is already in the file)."""
        return offsets.load_offsets(self.container_dir, self.restart)

    async def flush(self, after_write: Callable[[], None] | None = None) -> None:
        """Return once everything written so far is on disk (fdatasync'd if configured),
        including what an earlier writer (a previous gateway process) left in the file.

        Unterminated lines are written as P records: the gateway acknowledges device output
        only after this returns, so nothing may stay behind in memory. `after_write` runs in
        the I/O thread right after the data is written and before the sync, so a record of
        what was written (the runtime's offsets) cannot fall behind the data by more than
        that one call.
        """
        self._queue_partials()
        await asyncio.to_thread(self._drain, after_write)
        self._start_content_job()

    @property
    def followed(self) -> bool:
        """Whether a follower waits for this log's next bytes (`publish` is worth its cost)."""
        return self._changes is not None and self._changes.followed

    async def publish(self) -> None:
        """Write the complete records queued so far without waiting for a sync: followers
        read them now. Nothing is durable (nor may be acknowledged) until `flush()` returns.
        Raises OSError."""
        await asyncio.to_thread(self._publish)
        self._start_content_job()

    async def close(self) -> None:
        """Flush everything, then close the file. Idempotent."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        await asyncio.to_thread(self._close_file)
        await self._content_written()
        self._announce_end()

    async def abandon(self) -> None:
        """Close without writing what is still queued: for a log that failed, whose output
        the caller keeps elsewhere. Idempotent."""
        self._closed = True
        with self._buffer_lock:
            self._pending.clear()
        for buffer in self._partial.values():
            buffer.clear()
        await asyncio.to_thread(self._close_file)
        await self._content_written()
        self._announce_end()

    def _announce_end(self) -> None:
        # Followers wait for the end of this instance. Announced from the loop, so they wake
        # after the caller's current step: the runtime marks the container terminated in the
        # same step it closes the log, and a follower then sees it stopped.
        if self._changes is not None:
            self._changes.notify()

    def flush_blocking(self) -> None:
        """flush() for callers outside the event loop (shutdown paths, tools)."""
        self._queue_partials()
        self._drain()
        self._write_contents()

    def _start_content_job(self) -> None:
        if self._rotated and self._content_job is None:
            self._content_job = asyncio.ensure_future(self._content_loop())
            self._content_job.set_name(f"log contents {self.container_dir.name}")

    async def _content_loop(self) -> None:
        try:
            while self._rotated:  # checked on the loop: a rotation meanwhile is not missed
                await asyncio.to_thread(self._write_contents)
        finally:
            self._content_job = None

    async def _content_written(self) -> None:
        if self._content_job is not None:
            await asyncio.shield(self._content_job)

    def _write_contents(self) -> None:
        """Write the content files of the files rotated so far (worker thread)."""
        while True:
            with self._buffer_lock:
                if not self._rotated:
                    return
                rotated = self._rotated.pop(0)
            try:
                content.write_content_file(rotated, fsync=self._config.fsync)
            except OSError as exc:
                # Only a speed-up is lost: reads of that file format its records instead.
                logger.warning("cannot write the content file of %s: %s", rotated, exc)

    def _queue_partials(self) -> None:
        timestamp = self._clock()
        records = []
        for stream, buffer in self._partial.items():
            if buffer:
                record = encode_record(timestamp, stream, Tag.PARTIAL, bytes(buffer))
                records.append((record, stream, self._stream_end.get(stream)))
                buffer.clear()
        if records:
            with self._buffer_lock:
                self._pending.extend(records)

    # ---- worker side -------------------------------------------------------------------

    def _drain(self, after_write: Callable[[], None] | None = None) -> None:
        with self._io_lock:
            if self._publish_error is not None:
                # What that publish took from the queue is not (all) in the file: this flush
                # must not report it durable.
                raise self._publish_error
            records = self._take_pending()
            if records:
                self._write_records(records)
            elif not self._written_unsynced and (self._synced or not self.path.exists()):
                if after_write is not None:
                    after_write()
                return
            if self._fd is None:
                self._open()
            if after_write is not None:
                after_write()
            self._written_unsynced = False
            sync_fd = os.dup(self._fd) if self._config.fsync and self._fd is not None else None
        if sync_fd is not None:
            # Outside the I/O lock: output that arrives meanwhile is written (`publish`, the
            # next flush) and readable without waiting for this sync, which can take tens of
            # milliseconds on a busy disk. The duplicate keeps the file open if a rotation
            # closes it meanwhile (the rotation syncs it too).
            try:
                os.fdatasync(sync_fd)
            except OSError:
                with self._io_lock:
                    self._written_unsynced = True
                raise
            finally:
                os.close(sync_fd)
        self._synced = True

    def _publish(self) -> None:
        with self._io_lock:
            records = self._take_pending()
            if records:
                try:
                    self._write_records(records)
                except OSError as exc:
                    self._publish_error = exc
                    raise

    def _take_pending(self) -> list[tuple[bytes, Stream, int | None]]:
        with self._buffer_lock:
            records, self._pending = self._pending, []
        return records

    def _write_records(self, records: list[tuple[bytes, Stream, int | None]]) -> None:
        """Write records to the file, rotating before one would take it past max_bytes."""
        if self._fd is None:
            self._open()
        batch: list[tuple[bytes, Stream, int | None]] = []
        batch_size = 0
        for item in records:
            queued = self._size + batch_size
            if queued > 0 and queued + len(item[0]) > self._config.max_bytes:
                self._write_batch(batch)
                batch, batch_size = [], 0
                self._rotate()
            batch.append(item)
            batch_size += len(item[0])
        if batch:
            self._write_batch(batch)
        self._written_unsynced = True
        if self._changes is not None:
            # Readable now, like a kubelet's log files; acknowledged only after the sync.
            self._changes.notify()

    def _write_batch(self, batch: list[tuple[bytes, Stream, int | None]]) -> None:
        """Write records to the current file, the offsets record ahead of them."""
        data = b"".join(record for record, _, _ in batch)
        if self._tracking and self._fd is not None:
            if self._on_disk is None:
                self._on_disk = offsets.load_offsets(self.container_dir, self.restart)
            after = dict(self._on_disk)
            for _, stream, end in batch:
                if end is not None and end > after.get(stream, 0):
                    after[stream] = end
            offsets.save_intent(
                self.container_dir,
                self.restart,
                inode=os.fstat(self._fd).st_ino,
                size_before=self._size,
                size_after=self._size + len(data),
                before=self._on_disk,
                after=after,
            )
            self._on_disk = after
        self._write_all(data)

    def _open(self) -> None:
        self.container_dir.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, _OPEN_FLAGS, _FILE_MODE)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if self._size > 0 and os.pread(fd, 1, self._size - 1) != b"\n":
            # A crash tore the last record; terminate it so our first record parses.
            logger.warning("log %s ends in a torn record; terminating it", self.path)
            self._write_all(b"\n")
        if created:
            self._sync_dir()
        if not self._contents_checked:
            # Files rotated before a crash (or by a gateway without content files) get theirs.
            self._contents_checked = True
            missing = [
                path
                for path in layout.rotated_log_files(self.container_dir, self.restart)
                if not layout.content_file(path).exists()
            ]
            with self._buffer_lock:
                self._rotated[:0] = missing

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def _rotate(self) -> None:
        assert self._fd is not None
        if self._config.fsync:
            os.fdatasync(self._fd)
        os.close(self._fd)
        self._fd = None
        target = layout.rotated_name(
            self.container_dir, self.restart, format_rotation_suffix(self._clock())
        )
        os.rename(self.path, target)
        logger.debug("rotated %s to %s", self.path, target.name)
        with self._buffer_lock:
            self._rotated.append(target)
        self._prune()
        self._open()

    def _prune(self) -> None:
        rotated = layout.rotated_log_files(self.container_dir, self.restart)
        excess = len(rotated) - self._config.max_rotated_files
        for old in rotated[: max(excess, 0)]:
            old.unlink(missing_ok=True)
            content.remove_content_file(old)

    def _sync_dir(self) -> None:
        # A new or renamed file is only durable once its directory entry is.
        if not self._config.fsync:
            return
        dir_fd = os.open(self.container_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _close_file(self) -> None:
        with self._io_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _split_line(timestamp: int, stream: Stream, line: bytes, limit: int) -> list[bytes]:
    """A complete line as records: P chunks of `limit` bytes, then the F remainder."""
    records = []
    while len(line) > limit:
        records.append(encode_record(timestamp, stream, Tag.PARTIAL, line[:limit]))
        line = line[limit:]
    records.append(encode_record(timestamp, stream, Tag.FULL, line))
    return records
