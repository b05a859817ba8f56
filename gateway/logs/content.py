"""The content of a rotated log file, kept beside it, for whole-log reads to stream as it is.

A rotated file never changes again, and most of a long log is rotated files (4 of the 5 files a
container's log is kept at). Formatting CRI records back into output costs per record, even
in C-level passes (a 16-byte line carries a 40-byte header): a fetch of a full log of short
lines runs at tens of MB/s where the file system serves hundreds. So once a file is rotated,
its content (what `kubectl logs` shows without options: gateway.logs.formatter) is written
once to `.content/<restart>.<suffix>` (gateway.logs.layout.content_file), and a read that
needs neither timestamps nor since streams that file instead. The CRI files stay as they are:
log shippers read them.

The file is written under a temporary name, synced, and renamed: a content file that exists is
complete. One whose rotated file is gone (pruned meanwhile) is removed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gateway.logs import layout
from gateway.logs.formatter import Formatter

# Formatting holds the interpreter lock for one block at a time: small enough that the event
# loop is never held up for long, large enough that the per-block cost does not show.
_BLOCK = 256 * 1024


def write_content_file(rotated: Path, *, fsync: bool = True) -> Path | None:
    """Write the content of `rotated`; its path, or None if the rotated file is gone."""
    target = layout.content_file(rotated)
    temporary = target.with_name(target.name + ".tmp")
    try:
        source = rotated.open("rb")
    except FileNotFoundError:
        return None
    with source:
        target.parent.mkdir(exist_ok=True)
        formatter = Formatter(timestamps=False, since_ns=None, limit_bytes=None)
        with temporary.open("wb") as out:
            remainder = b""
            while block := source.read(_BLOCK):
                data = remainder + block
                cut = data.rfind(b"\n") + 1
                remainder = data[cut:]  # the start of a record the next block ends
                out.write(formatter.format(data[:cut]))
            out.flush()
            if fsync:
                os.fdatasync(out.fileno())
    os.replace(temporary, target)
    if not rotated.exists():
        # Pruned while this was written: its content must not outlive it.
        remove_content_file(rotated)
        return None
    return target


def remove_content_file(rotated: Path) -> None:
    target = layout.content_file(rotated)
    target.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        target.with_name(target.name + ".tmp").unlink()
