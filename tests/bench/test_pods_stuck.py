"""bench.pods reports a stuck run as a failure with its cause, never as a traceback."""

from __future__ import annotations

from typing import Any

import pytest

from bench import common
from bench.pods import one_run
from bench.pods_rounds import Size, unless_stuck
from bench.stuck import StuckRun, wait_nodes_ready
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


async def test_a_stuck_run_names_the_serving_process_that_exited_first(
    cluster: LocalCluster,
) -> None:
    """A virtual-kubelet process that crashed mid-run leaves its pods: the failure's first
    line (the one summary.md shows) says which process exited, the details follow."""
    api = await common.admin_api(cluster)
    state = "  1 of 50 virtual-kubelet processes exited (vk-0038: 2)\n  last lines of vk-0038.log:"
    try:
        with pytest.raises(StuckRun) as stuck:
            await one_run(api, 1, False, "crashed", within=3, why=lambda: state)
    finally:
        await api.close()
    message = str(stuck.value)
    first_line = message.splitlines()[0]
    assert first_line == (
        "1 of 1 pods not Running within 3s (1 of 50 virtual-kubelet processes exited (vk-0038: 2)):"
    )
    assert message.endswith(state)


async def test_nodes_that_never_get_ready_are_reported_with_the_processes_state(
    cluster: LocalCluster,
) -> None:
    api = await common.admin_api(cluster)
    try:
        with pytest.raises(StuckRun) as stuck:
            await wait_nodes_ready(api, ["t-no-such-node"], 1, lambda: "  gateway: exited with 1")
    finally:
        await api.close()
    message = str(stuck.value)
    assert message.startswith("1 of 1 nodes not Ready within 1s (1 never registered)")
    assert "t-no-such-node" in message
    assert message.endswith("\n  gateway: exited with 1")


async def test_any_error_of_one_implementations_run_is_a_failure_with_its_cause() -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("namespace x: no default service account")

    result = await unless_stuck("wirelet", Size(2, 1), broken())
    assert result == {"failed": "RuntimeError: namespace x: no default service account"}
