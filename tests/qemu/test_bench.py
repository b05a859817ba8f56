"""The firmware benchmark runs and reads real figures from the linker output (no figure is
asserted beyond being there: benchmarks are not tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.qemu import missing_tools
from hil.qemu.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]


def test_firmware_size_reports_flash_and_ram_per_target(tmp_path: Path) -> None:
    available = [name for name, target in TARGETS.items() if not missing_tools(target)]
    if not available:
        pytest.skip("no firmware toolchain: run `make system-deps`")
    env = {**os.environ, "WIRELET_BENCH_RESULTS": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.firmware_size"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "firmware_size.json").read_text())
    assert [r["target"] for r in report["targets"]] == available
    for r in report["targets"]:
        assert r["static_ram_bytes"] > r["library_state_bytes"] > 0, r
        assert r["flash_bytes"] > 0
