"""Devices that report what no container can have: the gateway records what Kubernetes can
hold, says what the device claimed, and keeps serving every other device."""

from __future__ import annotations

import logging

import pytest

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.mark.parametrize(
    ("claimed", "recorded"), [(2**40, 2**31 - 1), (-(2**63), -(2**31)), (2**31, 2**31 - 1)]
)
async def test_an_exit_code_beyond_int32_ends_the_pod_with_the_nearest_one(
    wirelet: Wirelet, caplog: pytest.LogCaptureFixture, claimed: int, recorded: int
) -> None:
    """The protocol's exit codes are int64, Kubernetes' int32: a status with the device's
    figure was refused by the API server (400) and never sent again, so the pod showed its
    container Running forever."""
    caplog.set_level(logging.WARNING)
    liar, honest = wirelet.fleet.devices[:2]
    node = wirelet.node(liar.profile.device_id)
    created = await wirelet.create_pod("absurd", "forever", ["100"], node=node)
    await wirelet.wait_container("absurd", lambda c: "running" in c["state"])
    task_id = f"{created['metadata']['uid']}/0/0"
    liar.end_task(task_id, claimed)

    pod = await wirelet.wait_pod_phase("absurd", "Failed")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == recorded, terminated
    assert terminated["reason"] == "Error"
    assert str(claimed) in terminated["message"], terminated
    warned = [r.getMessage() for r in caplog.records if str(claimed) in r.getMessage()]
    assert warned and liar.profile.device_id in warned[0], warned

    await wirelet.create_pod(
        "other", "counter", ["2", "10"], node=wirelet.node(honest.profile.device_id)
    )
    other = await wirelet.wait_pod_phase("other", "Succeeded", "Failed")
    assert other["status"]["phase"] == "Succeeded"
