"""A bounded fuzz run of the C receive path under AddressSanitizer and UndefinedBehaviorSanitizer:
random bytes, and well-framed (valid CRC) mutated payloads of every message type, fed to a device
whose timers and apps run in between. Any out-of-bounds access, leak of a bound or undefined
behaviour aborts the program, and the test fails with its report."""

from __future__ import annotations

import subprocess

import pytest

from .clib import Library, build


@pytest.mark.parametrize(
    ("program", "seed"),
    [
        ("wirelet-fuzz", 1),
        ("wirelet-fuzz", 2),
        ("wirelet-fuzz-small", 3),
        ("wirelet-fuzz-small", 4),
    ],
)
def test_receive_path_survives_hostile_input(library: Library, program: str, seed: int) -> None:
    fuzz = build("fuzz") / program
    result = subprocess.run(
        [str(fuzz), "60000", str(seed)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "60000 iterations" in result.stdout
