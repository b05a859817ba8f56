"""The README's main command works: `wirelet demo --check` runs a pod end to end and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_demo_check_runs_a_pod_to_completion() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--check"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo check: ok" in result.stdout
    assert "\n5\n" in result.stdout  # the counter's last line, read back through kubectl logs
