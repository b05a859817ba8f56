"""The boards hil.qemu can run: which QEMU, which machine, how the firmware is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # as on the command line: cortex-m | avr
    qemu: str  # the QEMU binary
    machine: str
    description: str
    make_goal: str  # the goal in hil/qemu/firmware/Makefile
    image: str  # the ELF, relative to the firmware build directory
    # How QEMU gets the image: -kernel (Cortex-M) or -bios (AVR flash).
    image_flag: str
    # The C runtime's start address, relative to the build directory, for boards whose QEMU model
    # resets the devices but not the CPU (AVR): a loader device sets the PC there on every reset.
    reset_pc_file: str | None = None
    # Tools the build needs, besides make.
    tools: tuple[str, ...] = ()

    def image_path(self, build_dir: Path) -> Path:
        return build_dir / self.image

    def qemu_args(self, image: Path, build_dir: Path) -> list[str]:
        args = [self.qemu, "-M", self.machine, self.image_flag, str(image)]
        if self.reset_pc_file is not None:
            pc = (build_dir / self.reset_pc_file).read_text().strip()
            args += ["-device", f"loader,addr={pc},cpu-num=0"]
        return args


TARGETS: dict[str, Target] = {
    "cortex-m": Target(
        name="cortex-m",
        qemu="qemu-system-arm",
        machine="mps2-an385",
        description="ARM MPS2 AN385 (Cortex-M3), emulated",
        make_goal="cortex-m",
        image="cortex-m/wirelet-reference.elf",
        image_flag="-kernel",
        tools=("arm-none-eabi-gcc",),
    ),
    "avr": Target(
        name="avr",
        qemu="qemu-system-avr",
        machine="mega2560",
        description="Arduino Mega 2560 (ATmega2560), emulated",
        make_goal="avr",
        image="avr/wirelet-reference.elf",
        image_flag="-bios",
        reset_pc_file="avr/reset-pc",
        tools=("avr-gcc", "/usr/share/arduino/Arduino.mk"),
    ),
}
