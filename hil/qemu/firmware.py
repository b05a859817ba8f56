"""Build the reference firmware (make -C hil/qemu/firmware) into a cache directory, and make
per-board copies of the image that carry the board's identity.

The image holds a block of text (hil/qemu/firmware/apps/board_identity.h):
    "WIRELET-BOARD-ID\\0" | id[49] | seed[9]
found by its magic and rewritten in a copy of the ELF: one build serves any number of boards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hil.qemu.targets import Target

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
REPO_ROOT = FIRMWARE_DIR.parents[2]
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "firmware"

IDENTITY_MAGIC = b"WIRELET-BOARD-ID\0"
ID_FIELD = 49  # bytes, with the terminating NUL
SEED_FIELD = 9  # 8 hex digits and a NUL
ID_MAX = ID_FIELD - 1


class FirmwareBuildError(RuntimeError):
    """The firmware did not build; the message holds make's output."""


def missing_tools(target: Target) -> list[str]:
    """What this machine lacks to build and run `target` (empty when all is there)."""
    needed = ["make", target.qemu, *target.tools]
    return [
        tool
        for tool in needed
        if not (os.path.exists(tool) if tool.startswith("/") else shutil.which(tool))
    ]


def build_firmware(target: Target, build_dir: Path | None = None) -> Path:
    """Run make for `target` (a no-op when up to date); returns the build directory."""
    build_dir = (build_dir or DEFAULT_BUILD_DIR).resolve()
    result = subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE_DIR), target.make_goal, f"BUILD={build_dir}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FirmwareBuildError(
            f"building the {target.name} firmware failed (make -C {FIRMWARE_DIR} "
            f"{target.make_goal}):\n{result.stdout}{result.stderr}"
        )
    return build_dir


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    """A built firmware image, ready to be specialised per board."""

    path: Path

    def identity_offset(self, data: bytes) -> int:
        first = data.find(IDENTITY_MAGIC)
        if first < 0:
            raise FirmwareBuildError(
                f"{self.path}: no board identity block (not wirelet firmware?)"
            )
        if data.find(IDENTITY_MAGIC, first + 1) >= 0:
            raise FirmwareBuildError(f"{self.path}: more than one board identity block")
        return first + len(IDENTITY_MAGIC)

    def for_board(self, device_id: str, destination: Path, seed: int | None = None) -> Path:
        """Write a copy of the image that says it is `device_id`, with a fresh boot-id seed."""
        raw_id = device_id.encode()
        if not raw_id or len(raw_id) > ID_MAX or b"\0" in raw_id:
            raise ValueError(f"device id {device_id!r}: 1..{ID_MAX} bytes of text needed")
        seed = secrets.randbits(32) if seed is None else seed & 0xFFFFFFFF
        data = bytearray(self.path.read_bytes())
        at = self.identity_offset(bytes(data))
        data[at : at + ID_FIELD] = raw_id.ljust(ID_FIELD, b"\0")
        data[at + ID_FIELD : at + ID_FIELD + SEED_FIELD] = f"{seed:08x}".encode() + b"\0"
        temp = destination.with_name(destination.name + ".tmp")
        temp.write_bytes(bytes(data))
        os.replace(temp, destination)
        return destination
