"""Real wirelet firmware on emulated boards: QEMU runs the reference firmware (hil/qemu/firmware)
with each board's UART on a pseudo-terminal, controlled through QMP.

    async with QemuFleet(tmp_path, {"qemu-0": "cortex-m", "qemu-1": "avr"}) as fleet:
        board = fleet.board("qemu-0")
        await board.reboot(); await board.hang(); await board.resume()
        await board.unplug(); await board.replug()
"""

from hil.qemu.board import BoardError, QemuBoard
from hil.qemu.firmware import FirmwareBuildError, FirmwareImage, build_firmware, missing_tools
from hil.qemu.fleet import QemuFleet
from hil.qemu.targets import TARGETS, Target

__all__ = [
    "TARGETS",
    "BoardError",
    "FirmwareBuildError",
    "FirmwareImage",
    "QemuBoard",
    "QemuFleet",
    "Target",
    "build_firmware",
    "missing_tools",
]
