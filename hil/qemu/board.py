"""One emulated board: a QEMU process running the firmware, its UART on a pty, QMP for control.

Faults map onto QEMU's own controls:
- reboot: QMP system_reset (the firmware boots again: a new boot id, no tasks);
- hang / resume: QMP stop / cont (the CPU and its timers freeze; the pty stays open);
- unplug / replug: the QEMU process stops / starts again, as a bus-powered board loses power with
  its USB cable: the tty goes away, comes back under a new name, and the board has rebooted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from hil.qemu.firmware import FirmwareImage
from hil.qemu.qmp import QmpClient, QmpError
from hil.qemu.targets import Target

_log = logging.getLogger(__name__)

UART_CHARDEV = "uart"
STOP_TIMEOUT_S = 5.0  # QEMU quits at once on SIGTERM; a bound for a wedged process


class BoardError(RuntimeError):
    """A board could not be started or controlled; the message says which and why."""


class QemuBoard:
    def __init__(
        self,
        target: Target,
        device_id: str,
        image: FirmwareImage,
        build_dir: Path,
        workdir: Path,
        *,
        on_tty_change: Callable[[QemuBoard], None] | None = None,
    ) -> None:
        self.target = target
        self.device_id = device_id
        self._image = image
        self._build_dir = build_dir
        self._workdir = workdir
        self._on_tty_change = on_tty_change
        self._process: asyncio.subprocess.Process | None = None
        self._qmp: QmpClient | None = None
        self.tty: str | None = None
        self.starts = 0  # QEMU processes started (power-ups)
        self.hung = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def log_path(self) -> Path:
        return self._workdir / f"{self._safe_name}.log"

    @property
    def _safe_name(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.device_id)

    async def start(self) -> None:
        """Power the board up: a fresh image copy (new boot-id seed), QEMU, its pty."""
        if self.running:
            return
        image = self._image.for_board(self.device_id, self._workdir / f"{self._safe_name}.elf")
        qmp_path = self._workdir / f"{self._safe_name}.qmp"
        with contextlib.suppress(FileNotFoundError):
            qmp_path.unlink()
        args = [
            *self.target.qemu_args(image, self._build_dir),
            "-display", "none",
            "-monitor", "none",
            "-chardev", f"pty,id={UART_CHARDEV}",
            "-serial", f"chardev:{UART_CHARDEV}",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
        ]  # fmt: skip
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        except OSError as exc:
            raise BoardError(f"{self.device_id}: cannot start {args[0]}: {exc}") from exc
        finally:
            os.close(log)
        self.starts += 1
        self.hung = False
        try:
            self._qmp = await QmpClient.connect(qmp_path)
            self.tty = await self._uart_tty()
        except (QmpError, OSError) as exc:
            await self.stop()
            raise BoardError(
                f"{self.device_id}: QEMU did not come up ({exc}); its output is in {self.log_path}"
            ) from exc
        _log.debug("%s: %s on %s", self.device_id, self.target.machine, self.tty)
        self._tty_changed()

    async def _uart_tty(self) -> str:
        assert self._qmp is not None
        for chardev in await self._qmp.execute("query-chardev"):
            if chardev.get("label") == UART_CHARDEV:
                filename = str(chardev.get("filename", ""))
                if filename.startswith("pty:"):
                    return filename[len("pty:") :]
        raise QmpError(f"no pty chardev {UART_CHARDEV!r}")

    async def stop(self) -> None:
        """Power the board off (the tty disappears)."""
        process, self._process = self._process, None
        qmp, self._qmp = self._qmp, None
        if qmp is not None:
            await qmp.close()
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self.tty is not None:
            self.tty = None
            self._tty_changed()

    def _tty_changed(self) -> None:
        if self._on_tty_change is not None:
            self._on_tty_change(self)

    async def _control(self, command: str) -> None:
        if self._qmp is None or not self.running:
            raise BoardError(f"{self.device_id}: not running (unplugged?): cannot {command}")
        await self._qmp.execute(command)

    # --- faults ----------------------------------------------------------------------------------

    async def reboot(self) -> None:
        """Press reset: the firmware starts again (new boot id, no tasks); the tty stays."""
        await self._control("system_reset")
        if self.hung:
            await self.resume()

    async def hang(self) -> None:
        """Freeze the CPU (no answers, no heartbeats) with the line still attached."""
        await self._control("stop")
        self.hung = True

    async def resume(self) -> None:
        await self._control("cont")
        self.hung = False

    async def unplug(self) -> None:
        await self.stop()

    async def replug(self) -> None:
        await self.stop()
        await self.start()

    async def status(self) -> str:
        if self._qmp is None or not self.running:
            return "off"
        state = await self._qmp.execute("query-status")
        return str(state.get("status", "unknown"))
