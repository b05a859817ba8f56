"""A fleet of emulated boards with by-id style symlinks, like hil.emulator's EmulatedFleet:
DIR/<device-id> points at the board's current pty, is removed while it is unplugged and re-pointed
(atomically) when it comes back, so `wirelet run --dir DIR` serves the boards unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from hil.emulator.control import ControlServer, control_socket_path
from hil.emulator.device_link import link_name, point_device_link
from hil.qemu.board import QemuBoard
from hil.qemu.firmware import FirmwareImage, build_firmware
from hil.qemu.targets import TARGETS, Target

BOARD_OPS = ("reboot", "hang", "resume", "unplug", "replug", "status")


class QemuFleet:
    def __init__(
        self,
        directory: str | Path,
        boards: Mapping[str, str | Target],
        *,
        build_dir: Path | None = None,
        control_socket: bool = False,
    ) -> None:
        """`boards` maps each device id to its target (a name in TARGETS, or a Target)."""
        self.directory = Path(directory)
        self._targets: dict[str, Target] = {}
        for device_id, target in boards.items():
            if isinstance(target, Target):
                self._targets[device_id] = target
            elif target in TARGETS:
                self._targets[device_id] = TARGETS[target]
            else:
                known = sorted(TARGETS)
                raise ValueError(f"{device_id}: unknown target {target!r}; known: {known}")
        self._build_dir = build_dir
        self._boards: dict[str, QemuBoard] = {}
        # QMP sockets and image copies: a short path (unix socket paths are limited to 107 bytes)
        self._workdir: Path | None = None
        self._control = (
            ControlServer(control_socket_path(self.directory), self._handle_control)
            if control_socket
            else None
        )

    async def __aenter__(self) -> QemuFleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        builds: dict[str, Path] = {}
        for target in {t.name: t for t in self._targets.values()}.values():
            builds[target.name] = await asyncio.to_thread(build_firmware, target, self._build_dir)
        self._workdir = Path(tempfile.mkdtemp(prefix="wirelet-qemu-"))
        try:
            for device_id, target in self._targets.items():
                build_dir = builds[target.name]
                self._boards[device_id] = QemuBoard(
                    target,
                    device_id,
                    FirmwareImage(target.image_path(build_dir)),
                    build_dir,
                    self._workdir,
                    on_tty_change=self._update_symlink,
                )
            await asyncio.gather(*(board.start() for board in self._boards.values()))
            if self._control is not None:
                await self._control.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._control is not None:
            await self._control.close()
        await asyncio.gather(*(board.stop() for board in self._boards.values()))
        for device_id in self._boards:
            with contextlib.suppress(FileNotFoundError):
                self.symlink(device_id).unlink()
        self._boards.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # --- access ------------------------------------------------------------------------------

    def board(self, device_id: str) -> QemuBoard:
        try:
            return self._boards[device_id]
        except KeyError:
            raise KeyError(f"no emulated board {device_id!r}") from None

    @property
    def boards(self) -> list[QemuBoard]:
        return list(self._boards.values())

    def symlink(self, device_id: str) -> Path:
        return self.directory / link_name(device_id)

    def _update_symlink(self, board: QemuBoard) -> None:
        point_device_link(self.directory, board.device_id, board.tty)

    # --- control socket (python -m hil.qemu ctl) -----------------------------------------------

    async def _handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "list":
            return {"ok": True, "boards": [await self._describe(b) for b in self.boards]}
        board = self.board(str(request.get("device", "")))
        if op not in BOARD_OPS:
            raise ValueError(f"unknown op {op!r}; known: {', '.join(BOARD_OPS)}")
        if op != "status":
            await getattr(board, str(op))()
        return {"ok": True, "board": await self._describe(board)}

    async def _describe(self, board: QemuBoard) -> dict[str, Any]:
        return {
            "id": board.device_id,
            "target": board.target.name,
            "machine": board.target.machine,
            "tty": board.tty,
            "symlink": str(self.symlink(board.device_id)),
            "state": await board.status(),
            "power_ups": board.starts,
            "log": str(board.log_path),
        }
