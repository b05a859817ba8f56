"""The benchmarks still run: `python -m bench --quick` on a fast subset, in a subprocess.

Benchmarks are not tests: this checks only that they run to the end and write their results,
never a figure (no timing assertions), so they cannot rot unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SUBSET = ("codec", "pods", "recovery")


def test_quick_benchmarks_run_and_write_results(tmp_path: Path) -> None:
    env = {**os.environ, "WIRELET_BENCH_RESULTS": str(tmp_path)}
    argv = [sys.executable, "-m", "bench", "--quick", "--no-vk", "--only", *SUBSET]
    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in SUBSET:
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["benchmark"] == name
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# wirelet benchmark summary")
    # Where the host's CPU went per pod start: the control plane's processes beside the node's.
    pods = json.loads((tmp_path / "pods.json").read_text())
    cpu = pods["results"][0]["wirelet"]["cpu_ms_per_pod_start"]
    assert cpu["API server"]["median"] > 0 and cpu["node"]["median"] > 0
    assert "| API server | etcd | scheduler |" in summary
