"""Clusters start side by side and leave no process behind: on stop, on `down`, on parent death."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.cluster.local import LocalCluster
from hil.cluster.process import pid_alive

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

# Started in a child interpreter so the test can SIGKILL the cluster's parent.
_ORPHAN_SCRIPT = """
import json, sys, time
from hil.cluster.local import LocalCluster
c = LocalCluster()
c.start()
print(json.dumps({"pids": c.pids, "run_dir": str(c.run_dir)}), flush=True)
time.sleep(600)
"""


def _wait_all_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if pid_alive(pid)]


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(180)
def test_second_cluster_runs_beside_first_and_stop_leaves_nothing(cluster: LocalCluster) -> None:
    second = LocalCluster()
    try:
        second.start()
        assert second.server != cluster.server
        assert second.run_dir != cluster.run_dir
        assert second.readyz()
        assert cluster.readyz()
        pids = list(second.pids.values())
        assert set(second.pids) == _COMPONENTS
    finally:
        second.stop()
    assert _wait_all_gone(pids, timeout=1.0) == []
    assert not second.run_dir.exists()
    assert cluster.readyz()


@pytest.mark.timeout(180)
def test_components_die_with_a_killed_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        started = json.loads(parent.stdout.readline())
        pids = list(started["pids"].values())
        # Nobody is left to remove the temporary run dir of a SIGKILLed parent; the test does.
        run_dir = Path(started["run_dir"])
        assert len(pids) == 4
        assert all(pid_alive(pid) for pid in pids)
        parent.kill()
        parent.wait()
        assert _wait_all_gone(pids) == []
        shutil.rmtree(run_dir)
    finally:
        parent.kill()
        parent.wait()
        _kill_leftovers(pids)


def _cli(*args: str, timeout: float = 150.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hil.cluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(240)
def test_cli_up_detach_status_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "cluster"
    up = _cli("up", "--detach", "--run-dir", str(run_dir))
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith(f"export KUBECONFIG={run_dir}")
    state = json.loads((run_dir / "state.json").read_text())
    pids = [state["supervisor_pid"], *state["pids"].values()]
    try:
        # The CLI has exited; the cluster must still serve.
        status = _cli("status", "--run-dir", str(run_dir), timeout=30)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "readyz: ok" in status.stdout
        down = _cli("down", "--run-dir", str(run_dir), timeout=60)
        assert down.returncode == 0, down.stderr
        assert _wait_all_gone(pids, timeout=5.0) == []
        after = _cli("status", "--run-dir", str(run_dir), timeout=30)
        assert after.returncode == 1
        assert "not running" in after.stdout
    finally:
        _kill_leftovers(pids)
