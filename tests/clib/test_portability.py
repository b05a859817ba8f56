"""The library builds warning-free (-Wall -Wextra -pedantic -Werror) for the MCU toolchains that
are installed, in both profiles, and its state fits the RAM budget there: at most 4 KB by default
and 2 KB in the small profile (the struct size from the compiler's symbol table)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .clib import C_DIR

SOURCES = ("src/wirelet.c", "src/wl_codec.c", "src/wl_schema.c", "apps/wirelet_apps.c")
STRICT = ("-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-Os")
ARM = ("arm-none-eabi-gcc", ("-mcpu=cortex-m3", "-mthumb"))
CASES = {
    "cortex-m3-default": (*ARM, "default"),
    "cortex-m3-small": (*ARM, "small"),
    "atmega2560-default": ("avr-gcc", ("-mmcu=atmega2560",), "default"),
    "atmega328p-small": ("avr-gcc", ("-mmcu=atmega328p",), "small"),
}
BUDGET = {"default": 4096, "small": 2048}
PROBE = '#include "wirelet.h"\nwirelet_device probe_device;\n'


@pytest.mark.parametrize("case", list(CASES))
def test_builds_strictly_and_fits_the_ram_budget(case: str, tmp_path: Path) -> None:
    cc, flags, profile = CASES[case]
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed (make system-deps installs the MCU toolchains)")
    defines = ("-DWIRELET_PROFILE_SMALL",) if profile == "small" else ()
    probe = tmp_path / "probe.c"
    probe.write_text(PROBE)
    includes = [f"-I{C_DIR / d}" for d in ("include", "src", "apps")]
    sources = [str(C_DIR / s) for s in SOURCES]
    subprocess.run(
        [cc, *flags, *STRICT, *defines, *includes, "-c", *sources, str(probe)],
        cwd=tmp_path, check=True, capture_output=True, text=True,
    )  # fmt: skip
    nm = cc[: -len("gcc")] + "nm"
    symbols = subprocess.run(
        [nm, "-S", str(tmp_path / "probe.o")], check=True, capture_output=True, text=True
    ).stdout
    (size,) = [int(line.split()[1], 16) for line in symbols.splitlines() if "probe_device" in line]
    assert size <= BUDGET[profile]
