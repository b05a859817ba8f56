"""The short soak: a few devices with counter pods under every kind of chaos, invariants checked.

`make soak` runs the long one; this runs every chaos kind at least once in well under a minute
of chaos, on the session's control plane, and fails on any broken invariant (it never asserts a
time: the counts are behaviour).
"""

from __future__ import annotations

import pytest

from bench.soak import CHAOS_KINDS, soak
from bench.soak_report import print_report
from hil.cluster.local import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]


async def test_short_soak_keeps_every_invariant(cluster: LocalCluster) -> None:
    report = await soak(
        duration_s=40.0,
        devices=4,
        lines=100,
        interval_ms=20,
        chaos_every_s=2.0,
        seed=7,
        cluster=cluster,
    )
    print_report(report)
    assert report.ok, report.as_dict()
    assert set(report.chaos) == set(CHAOS_KINDS), report.chaos
    assert report.pods_succeeded > 0 and report.lines_checked > 0, report.as_dict()
