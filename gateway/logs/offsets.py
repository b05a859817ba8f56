"""How far each stream of a container instance is on disk, in the device's byte offsets.

Written after every durable flush, read when a restarted gateway adopts a running task: the
device re-sends output it holds unacknowledged, and what the log already has (flushed, but the
acknowledgement did not reach the device before the crash) is recognised by offset and dropped
instead of being written twice.

The file is replaced atomically and is written after the log's fdatasync, so it never claims
more than the log holds; if a crash falls between the two, the output is kept twice, never lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def offsets_file(container_dir: Path, restart: int) -> Path:
    return container_dir / f"{restart}.offsets"


def save_offsets(container_dir: Path, restart: int, ends: Mapping[str, int]) -> None:
    path = offsets_file(container_dir, restart)
    temporary = path.with_suffix(".offsets.tmp")
    temporary.write_text(json.dumps(dict(ends)))
    os.replace(temporary, path)


def load_offsets(container_dir: Path, restart: int) -> dict[str, int]:
    """{} when there is no (readable) record: then nothing is dropped as a repeat."""
    try:
        data = json.loads(offsets_file(container_dir, restart).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int)}
