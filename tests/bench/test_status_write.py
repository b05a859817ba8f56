"""bench.status_write measures both ways of writing a pod status on a real API server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common, status_write
from hil.cluster.local import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_both_ways_are_measured_and_stored(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    report = await status_write.run(cluster, quick=True, repeats=2)
    for way in status_write.WAYS:
        figures = report["ways"][way]
        assert figures["cpu_ms_per_write"]["n"] == 2
        assert figures["cpu_ms_per_write"]["median"] > 0
    assert report["put_over_patch_cpu"] > 0
    assert (tmp_path / "status_write.json").exists()
