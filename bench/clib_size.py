"""Flash and RAM of the C device library per target, from the linker's output.

    python -m bench.clib_size

For each target whose compiler is installed (host cc, arm-none-eabi-gcc for a Cortex-M3,
avr-gcc for the ATmega2560 and the ATmega328P of the Arduino Uno), links
firmware_protocol/c/test/size_main.c (the library, the six reference apps, a stub HAL) with -Os
and section garbage collection, once with the library and once without (baseline), and reads
`size` and `nm`: flash = .text + .data of the image minus the baseline, static RAM = .data +
.bss minus the baseline, `wirelet_device` = the symbol size of the device struct. Results go to
bench/results/clib_size.json and a markdown table on stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common

C_DIR = Path(__file__).resolve().parents[1] / "firmware_protocol" / "c"
SOURCES = ["src/wirelet.c", "src/wl_codec.c", "src/wl_schema.c", "apps/wirelet_apps.c"]
GC = ["-Os", "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections"]


@dataclass(frozen=True)
class Target:
    name: str
    cc: str
    flags: tuple[str, ...]
    profile: str  # "default" or "small"


TARGETS = (
    Target("host-x86_64", "cc", (), "default"),
    Target("host-x86_64", "cc", (), "small"),
    Target(
        "cortex-m3",
        "arm-none-eabi-gcc",
        ("-mcpu=cortex-m3", "-mthumb", "--specs=nano.specs", "--specs=nosys.specs"),
        "default",
    ),
    Target(
        "cortex-m3",
        "arm-none-eabi-gcc",
        ("-mcpu=cortex-m3", "-mthumb", "--specs=nano.specs", "--specs=nosys.specs"),
        "small",
    ),
    # As the Arduino AVR core builds sketches: -Os with link-time optimisation.
    Target("atmega2560", "avr-gcc", ("-mmcu=atmega2560", "-flto"), "default"),
    Target("atmega2560", "avr-gcc", ("-mmcu=atmega2560", "-flto"), "small"),
    Target("atmega328p", "avr-gcc", ("-mmcu=atmega328p", "-flto"), "small"),
)


def _size_tool(cc: str) -> str:
    return cc[: -len("gcc")] + "size" if cc.endswith("gcc") else "size"


def _nm_tool(cc: str) -> str:
    return cc[: -len("gcc")] + "nm" if cc.endswith("gcc") else "nm"


def _link(target: Target, out: Path, baseline: bool) -> dict[str, int]:
    args = [target.cc, *target.flags, *GC, "-std=c99", "-Iinclude", "-Isrc", "-Iapps"]
    if target.profile == "small":
        args.append("-DWIRELET_PROFILE_SMALL")
    if baseline:
        args += ["-DWIRELET_SIZE_BASELINE", "test/size_main.c"]
    else:
        args += ["test/size_main.c", *SOURCES]
    linked = subprocess.run(
        [*args, "-o", str(out)], cwd=C_DIR, capture_output=True, text=True, check=False
    )
    if linked.returncode != 0:
        reason = [line for line in linked.stderr.splitlines() if "overflowed" in line]
        raise LinkError(reason[0].split(": ")[-1] if reason else linked.stderr.strip())
    text = subprocess.run(
        [_size_tool(target.cc), "-B", str(out)], check=True, capture_output=True, text=True
    ).stdout.splitlines()[1]
    code, data, bss = (int(v) for v in text.split()[:3])
    sizes = {"text": code, "data": data, "bss": bss}
    if not baseline:
        symbols = subprocess.run(
            [_nm_tool(target.cc), "-S", str(out)], check=True, capture_output=True, text=True
        ).stdout
        for line in symbols.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[3] == "wirelet_size_device":
                sizes["device"] = int(parts[1], 16)
    return sizes


class LinkError(Exception):
    """The image does not link (e.g. it overflows the part's flash)."""


def measure(target: Target) -> dict[str, Any] | None:
    if shutil.which(target.cc) is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            full = _link(target, Path(tmp) / "full.elf", baseline=False)
        except LinkError as exc:
            return {"target": target.name, "profile": target.profile, "error": str(exc)}
        base = _link(target, Path(tmp) / "base.elf", baseline=True)
    return {
        "target": target.name,
        "profile": target.profile,
        "flash_bytes": full["text"] + full["data"] - base["text"] - base["data"],
        "static_ram_bytes": full["data"] + full["bss"] - base["data"] - base["bss"],
        "wirelet_device_bytes": full["device"],
    }


def main() -> None:
    rows = [r for r in (measure(t) for t in TARGETS) if r is not None]
    common.say("| target | profile | flash (library + apps) | static RAM | wirelet_device |")
    common.say("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            common.say(f"| {r['target']} | {r['profile']} | does not link: {r['error']} | | |")
            continue
        common.say(
            f"| {r['target']} | {r['profile']} | {r['flash_bytes']} B | "
            f"{r['static_ram_bytes']} B | {r['wirelet_device_bytes']} B |"
        )
    path = common.write_result("clib_size", {"machine": common.machine(), "targets": rows})
    common.say(f"results: {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
