"""How far each stream of a container instance is in its log, in the device's byte offsets.

Read when a restarted gateway adopts a running task: the device re-sends output it holds
unacknowledged, and what the log already has (written, but the acknowledgement did not reach
the device before the crash) is recognised by offset and dropped instead of being written twice.

The record is written *ahead* of each write to the log (`save_intent`): the file it goes to
(inode), that file's size before and after the write, and the stream offsets before and after.
Whether the write happened is then read off the file itself: if it has reached `size_after`,
the offsets are `after`, else `before`. So a crash at any point (before the write, after it,
before or after the record is replaced) never makes a restarted gateway skip output the log
lacks or write twice what it has. Only a write torn in the middle (a power cut; a process kill
cannot tear one `write()` to a regular file) falls back to `before`, repeating that part.

The intent record is rewritten in place, one `pwrite` of a fixed-width block at the start of
the file, not replaced through a temporary file and a rename: that create and rename cost ext4
about 0.5 ms of CPU per log flush (`python -m bench.log_flush`), the largest part of a quiet
container's flush. A process kill cannot tear one write; a write torn otherwise (a power cut
within the block, or a read racing the write) fails the record's CRC-32 and reads as no record,
so nothing is dropped: the log may repeat output, never lack it. A record too long for the block
(never, with two streams) is replaced atomically instead.

The older format, a plain `{"stdout": n, "stderr": m}` saved after the write, is still read
(`save_offsets` writes it, for tools and tests).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.logs import layout


def offsets_file(container_dir: Path, restart: int) -> Path:
    return container_dir / f"{restart}.offsets"


# The intent record's block: padded with spaces (JSON allows trailing white space) so a shorter
# record overwrites all of a longer one; within the first 512-byte sector of the file.
RECORD_BLOCK = 512
# `{...,"crc32":N}`: N is the CRC-32 of the record with `,"crc32":N` left out.
_CHECKED = re.compile(rb'(\{.*),"crc32":(\d+)\}\s*', re.DOTALL)


def _replace(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_suffix(".offsets.tmp")
    temporary.write_text(json.dumps(dict(data)))
    os.replace(temporary, path)


def _checked(record: Mapping[str, Any]) -> bytes:
    body = json.dumps(dict(record), separators=(",", ":")).encode()
    return body[:-1] + b',"crc32":%d}' % zlib.crc32(body)


def _overwrite(path: Path, record: Mapping[str, Any]) -> None:
    """Write `record` over the file's first block in one write (see the module's docstring)."""
    data = _checked(record)
    if len(data) > RECORD_BLOCK:
        _replace(path, record)  # the block cannot hold it: atomically, as a whole file
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        os.pwrite(fd, data.ljust(RECORD_BLOCK), 0)
        if os.fstat(fd).st_size > RECORD_BLOCK:
            # Left by a whole-file record: what follows the block is not part of this one.
            os.ftruncate(fd, RECORD_BLOCK)
    finally:
        os.close(fd)


def _verified(raw: bytes) -> bytes | None:
    """The record without its checksum; None if it carries one that does not match (torn)."""
    match = _CHECKED.fullmatch(raw)
    if match is None:
        return raw if b'"crc32"' not in raw else None
    body = match.group(1) + b"}"
    return body if zlib.crc32(body) == int(match.group(2)) else None


def save_intent(
    container_dir: Path,
    restart: int,
    *,
    inode: int,
    size_before: int,
    size_after: int,
    before: Mapping[str, int],
    after: Mapping[str, int],
) -> None:
    """Record, before writing `size_after - size_before` bytes to the file `inode`, the stream
    offsets the log holds without that write (`before`) and with it (`after`)."""
    record = {
        "inode": inode,
        "size_before": size_before,
        "size_after": size_after,
        "before": dict(before),
        "after": dict(after),
    }
    _overwrite(offsets_file(container_dir, restart), record)


def save_offsets(container_dir: Path, restart: int, ends: Mapping[str, int]) -> None:
    """The older, simple record: offsets the log holds, saved after the write."""
    _replace(offsets_file(container_dir, restart), ends)


def load_offsets(container_dir: Path, restart: int) -> dict[str, int]:
    """The offsets the log holds. {} when there is no (readable) record: nothing is dropped."""
    try:
        raw = _verified(offsets_file(container_dir, restart).read_bytes())
        if raw is None:
            return {}  # torn: as no record, nothing is dropped
        data = json.loads(raw)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "after" not in data:
        return _ends(data)
    try:
        inode, size_after = int(data["inode"]), int(data["size_after"])
    except (KeyError, TypeError, ValueError):
        return {}
    before, after = _ends(data.get("before")), _ends(data.get("after"))
    for path in layout.instance_log_files(container_dir, restart):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if stat.st_ino == inode:
            return after if stat.st_size >= size_after else before
    # The file is gone: rotated away and pruned, which happens only after its write completed.
    return after


def _ends(data: object) -> dict[str, int]:
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int)}
