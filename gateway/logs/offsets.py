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

The file is replaced atomically. The older format, a plain `{"stdout": n, "stderr": m}` saved
after the write, is still read (`save_offsets` writes it, for tools and tests).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.logs import layout


def offsets_file(container_dir: Path, restart: int) -> Path:
    return container_dir / f"{restart}.offsets"


def _replace(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_suffix(".offsets.tmp")
    temporary.write_text(json.dumps(dict(data)))
    os.replace(temporary, path)


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
    _replace(offsets_file(container_dir, restart), record)


def save_offsets(container_dir: Path, restart: int, ends: Mapping[str, int]) -> None:
    """The older, simple record: offsets the log holds, saved after the write."""
    _replace(offsets_file(container_dir, restart), ends)


def load_offsets(container_dir: Path, restart: int) -> dict[str, int]:
    """The offsets the log holds. {} when there is no (readable) record: nothing is dropped."""
    try:
        data = json.loads(offsets_file(container_dir, restart).read_text())
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
