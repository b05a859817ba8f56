"""The stable name of an emulated device: `<directory>/<device id>` -> its current tty.

What `/dev/serial/by-id` is for a real board: the gateway watches the directory (`--dir`), and
the link follows the device across re-plugs (a new pty each time) or disappears while unplugged.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def point_device_link(directory: Path, device_id: str, tty: str | None) -> None:
    """Point the device's link at `tty`, or remove it when there is none (unplugged)."""
    link = directory / device_id
    if not tty:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        return
    # Create aside, then rename over: a reader never sees a missing or half-made link.
    temp = directory / f".{device_id}.tmp"
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    os.symlink(tty, temp)
    os.replace(temp, link)
