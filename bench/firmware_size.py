"""Flash and RAM of the reference firmware per target, from the linker's output (`size`, `nm`).

    python -m bench.firmware_size

Builds hil/qemu/firmware for each target whose toolchain is installed and reports, from the ELF:
flash = .text + .data (code, constants, initial values), static RAM = .data + .bss, and the part
of that RAM which is the device library's state (the `wirelet_device`, its symbol size). The stack
comes on top. Results also go to bench/results/firmware_size.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from hil.qemu.firmware import build_firmware, missing_tools
from hil.qemu.targets import TARGETS

RESULTS = (
    Path(os.environ.get("WIRELET_BENCH_RESULTS") or Path(__file__).parent / "results")
    / "firmware_size.json"
)
BINUTILS = {"cortex-m": "arm-none-eabi-", "avr": "avr-"}
# the firmware's `static wirelet_device dev;` (C name, and the AVR sketch's C++ mangled name,
# which link-time optimisation suffixes with ".lto_priv.N")
DEVICE_SYMBOLS = ("dev", "_ZL3dev")


def _is_device_symbol(name: str) -> bool:
    return name.split(".lto_priv.", maxsplit=1)[0] in DEVICE_SYMBOLS


def measure(target_name: str) -> dict[str, Any]:
    target = TARGETS[target_name]
    elf = target.image_path(build_firmware(target))
    prefix = BINUTILS[target_name]
    size = (
        subprocess.run(
            [f"{prefix}size", "-B", str(elf)], capture_output=True, text=True, check=True
        )
        .stdout.splitlines()[1]
        .split()
    )
    text, data, bss = int(size[0]), int(size[1]), int(size[2])
    symbols = subprocess.run(
        [f"{prefix}nm", "-S", str(elf)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    library_state = next(
        (
            int(f[1], 16)
            for f in (line.split() for line in symbols)
            if len(f) == 4 and _is_device_symbol(f[3])
        ),
        0,
    )
    return {
        "target": target_name,
        "board": target.description,
        "flash_bytes": text + data,
        "static_ram_bytes": data + bss,
        "library_state_bytes": library_state,
        "elf": str(elf),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no effect (builds are quick)")
    parser.parse_args()
    results = []
    for name, target in TARGETS.items():
        missing = missing_tools(target)
        if missing:
            print(f"{name:>9}: skipped ({', '.join(missing)} missing: run `make system-deps`)")
            continue
        r = measure(name)
        results.append(r)
        print(
            f"{name:>9}: flash {r['flash_bytes']} B, static RAM {r['static_ram_bytes']} B "
            f"(device library state {r['library_state_bytes']} B)  [{r['board']}]",
            flush=True,
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"targets": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
