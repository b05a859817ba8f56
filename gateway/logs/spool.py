"""Device output that has no container log to go to yet, kept on disk until it has one.

The gateway acknowledges output to a device only once it is on disk. Some output arrives when
no container log can take it: a restarted gateway hears the device re-send what the previous
process had not acknowledged before the device's task list (and the pods from the API) say
whose it is, and a pod whose log cannot be written has nowhere to put it. Holding such output
unacknowledged would fill the device's window and stall everything behind it, the handshake's
own reply included. The spool makes it durable at once instead; the runtime moves it into the
container's log when the pod is known, then discards it.

    <spool dir>/<pod uid>/<quoted task id>.spool     records: u8 stream, u64 offset, u32 size, data

Files are appended and fdatasync'd by `flush()` in a worker thread (as the log writer does); a
record torn by a crash is ignored on reading (its output was never acknowledged, so the device
sends it again). Reading is on the caller's thread: it is rare (a pod appears) and small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import struct
import threading
import urllib.parse
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">BQI")
_STREAM_CODES = {"stdout": 1, "stderr": 2}
_STREAM_NAMES = {code: name for name, code in _STREAM_CODES.items()}
_SUFFIX = ".spool"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class SpooledOutput:
    stream: str  # "stdout" or "stderr"
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


class OutputSpool:
    """One directory of spooled output for all devices, keyed by pod uid and task id."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        self._fsync = fsync
        # Records added and not yet written, per (uid, task id), under _buffer_lock.
        self._pending: dict[tuple[str, str], list[bytes]] = {}
        self._buffer_lock = threading.Lock()
        self._io_lock = threading.Lock()
        # Files this process has appended to (so a torn tail was already cut). I/O thread state.
        self._checked: set[Path] = set()
        # What is spooled (on disk or pending): uid -> task ids, under _buffer_lock.
        self._index: dict[str, set[str]] = self._scan()

    def _scan(self) -> dict[str, set[str]]:
        index: dict[str, set[str]] = {}
        try:
            pods = list(self.directory.iterdir())
        except FileNotFoundError:
            return index
        for pod in pods:
            try:
                files = list(pod.iterdir())
            except NotADirectoryError:
                continue
            for file in files:
                if file.name.endswith(_SUFFIX):
                    task_id = urllib.parse.unquote(file.name[: -len(_SUFFIX)])
                    index.setdefault(pod.name, set()).add(task_id)
        return index

    def add(self, uid: str, task_id: str, stream: str, offset: int, data: bytes) -> None:
        """Queue output in memory; on disk once a later `flush()` returns."""
        record = _HEADER.pack(_STREAM_CODES[stream], offset, len(data)) + data
        with self._buffer_lock:
            self._pending.setdefault((uid, task_id), []).append(record)
            self._index.setdefault(uid, set()).add(task_id)

    async def flush(self) -> None:
        """Return once everything added so far is written and fdatasync'd. Raises OSError."""
        await asyncio.to_thread(self._drain)

    def task_ids(self, uid: str) -> list[str]:
        with self._buffer_lock:
            return sorted(self._index.get(uid, ()))

    def uids(self) -> list[str]:
        with self._buffer_lock:
            return sorted(self._index)

    def read(self, uid: str, task_id: str) -> list[SpooledOutput]:
        """Everything spooled for the task, on disk or still pending, in arrival order."""
        with self._io_lock:
            try:
                data = self._file(uid, task_id).read_bytes()
            except FileNotFoundError:
                data = b""
            with self._buffer_lock:
                data += b"".join(self._pending.get((uid, task_id), ()))
        return list(_decode(data))

    def discard(self, uid: str, task_id: str) -> None:
        """Forget a task's spooled output (its log now holds it)."""
        with self._io_lock:
            with self._buffer_lock:
                self._pending.pop((uid, task_id), None)
            self._file(uid, task_id).unlink(missing_ok=True)
            self._checked.discard(self._file(uid, task_id))
            with contextlib.suppress(OSError):
                self._file(uid, task_id).parent.rmdir()  # only once empty
            with self._buffer_lock:
                tasks = self._index.get(uid)
                if tasks is not None:
                    tasks.discard(task_id)
                    if not tasks:
                        del self._index[uid]

    def discard_pod(self, uid: str) -> bool:
        """Forget everything spooled for a pod; True if there was anything."""
        with self._io_lock:
            with self._buffer_lock:
                for key in [k for k in self._pending if k[0] == uid]:
                    del self._pending[key]
                indexed = self._index.pop(uid, None) is not None
            existed = (self.directory / uid).is_dir()
            shutil.rmtree(self.directory / uid, ignore_errors=True)
            self._checked = {p for p in self._checked if p.parent.name != uid}
        return indexed or existed

    def discard_all_but(self, live_uids: Collection[str]) -> list[str]:
        """Forget the output of pods not in `live_uids`; return their uids."""
        gone = [uid for uid in self.uids() if uid not in live_uids]
        for uid in gone:
            self.discard_pod(uid)
            logger.info("discarded spooled output of vanished pod uid %s", uid)
        return gone

    def _file(self, uid: str, task_id: str) -> Path:
        return self.directory / uid / (urllib.parse.quote(task_id, safe="") + _SUFFIX)

    def _drain(self) -> None:
        with self._io_lock:
            with self._buffer_lock:
                pending, self._pending = self._pending, {}
            done: list[tuple[str, str]] = []
            try:
                for key, records in pending.items():
                    self._append(self._file(*key), b"".join(records))
                    done.append(key)
            except OSError:
                # Keep what did not reach the disk for the next flush, ahead of anything newer;
                # a record half-written by the failed append is cut before that one appends.
                with self._buffer_lock:
                    newer, self._pending = self._pending, {}
                    for key, records in pending.items():
                        if key not in done:
                            self._pending[key] = records
                            self._checked.discard(self._file(*key))
                    for key, records in newer.items():
                        self._pending.setdefault(key, []).extend(records)
                raise

    def _append(self, path: Path, data: bytes) -> None:
        created = not path.parent.is_dir()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._sync_dir(path.parent.parent)
        new = not path.exists()
        fd = os.open(path, _OPEN_FLAGS, 0o640)
        try:
            if not new and path not in self._checked:
                # A crash may have torn the last record; appending after it would hide every
                # later record from `_decode`. Cut it (it was never acknowledged).
                whole = _whole_length(path.read_bytes())
                if whole != os.fstat(fd).st_size:
                    os.ftruncate(fd, whole)
            self._checked.add(path)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if new:
            self._sync_dir(path.parent)

    def _sync_dir(self, directory: Path) -> None:
        if not self._fsync:
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _decode(data: bytes) -> list[SpooledOutput]:
    records: list[SpooledOutput] = []
    position = 0
    while (record := _record_at(data, position)) is not None:
        code, offset, start, end = record
        records.append(SpooledOutput(_STREAM_NAMES[code], offset, data[start:end]))
        position = end
    return records


def _whole_length(data: bytes) -> int:
    """Bytes of `data` up to the end of its last whole record."""
    position = 0
    while (record := _record_at(data, position)) is not None:
        position = record[3]
    return position


def _record_at(data: bytes, position: int) -> tuple[int, int, int, int] | None:
    """(stream code, offset, data start, data end) of the record at `position`; None at the end
    or at a record torn by a crash (never acknowledged: the device sends it again)."""
    if position + _HEADER.size > len(data):
        return None
    code, offset, size = _HEADER.unpack_from(data, position)
    start = position + _HEADER.size
    if start + size > len(data) or code not in _STREAM_NAMES:
        return None
    return code, offset, start, start + size
