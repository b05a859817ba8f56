"""bench.pods reports a stuck run as a failure with its cause, never as a traceback."""

from __future__ import annotations

import pytest

from bench import common
from bench.pods import StuckRun, one_run
from hil.cluster.local import LocalCluster

pytestmark = pytest.mark.integration


async def test_pods_that_never_run_are_reported_with_phase_conditions_and_events(
    cluster: LocalCluster,
) -> None:
    # No wirelet node exists: the pods' node affinity leaves them Pending, unschedulable.
    api = await common.admin_api(cluster)
    try:
        with pytest.raises(StuckRun) as stuck:
            await one_run(api, 2, True, "stuck", within=5)
    finally:
        await api.close()
    message = str(stuck.value)
    assert message.startswith("2 of 2 pods not Running within 5s:")
    assert "p0000 on unbound: Pending" in message
    assert "p0001 on unbound: Pending" in message
    assert "PodScheduled=False (Unschedulable" in message
    assert "FailedScheduling" in message
    assert "stuck by phase: 2 Pending" in message
