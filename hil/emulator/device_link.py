"""The stable name of an emulated device: `<directory>/<device id>` -> its current tty.

What `/dev/serial/by-id` is for a real board: the gateway watches the directory (`--dir`), and
the link follows the device across re-plugs (a new pty each time) or disappears while unplugged.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def link_name(device_id: str) -> str:
    """The link's file name: the id, with what a file name cannot hold escaped as %XX ('/',
    NUL, '%' itself, a leading '.' that would hide it), so every id the protocol allows has one.
    """
    name = "".join(f"%{ord(ch):02X}" if ch in "/%\0" else ch for ch in device_id)
    return f"%2E{name[1:]}" if name.startswith(".") else name


def point_device_link(directory: Path, device_id: str, tty: str | None) -> None:
    """Point the device's link at `tty`, or remove it when there is none (unplugged)."""
    link = directory / link_name(device_id)
    if not tty:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        return
    # Create aside, then rename over: a reader never sees a missing or half-made link.
    temp = directory / f".{link.name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    os.symlink(tty, temp)
    os.replace(temp, link)
