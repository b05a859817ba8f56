"""A device with more tasks than one frame can list comes back after an unplug (issue: a
device that had run ~8 tasks never reconnected, its task list no longer fitting its frame)."""

from __future__ import annotations

import pytest

from firmware_protocol import ListTasks

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CONTAINERS = 16  # 16 task ids of 40 bytes: about 1 KB of task list, twice the 512-byte frame


# The gateway's receive frame bounds the device's replies: 512 here (the default is larger).
@pytest.mark.gateway_config(link={"max_frame": 512})
@pytest.mark.device_profile(task_slots=CONTAINERS + 4, remembered_tasks=CONTAINERS)
async def test_node_with_a_task_list_over_one_frame_is_ready_again_after_replug(
    wirelet: Wirelet,
) -> None:
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    containers = [
        {"name": f"c{i}", "image": "exit", "args": ["0"]} for i in range(CONTAINERS - 1)
    ] + [{"name": "runs", "image": "forever", "args": ["100"]}]
    await wirelet.create_pod("many", "exit", ["0"], node=node, extra={"containers": containers})

    async def all_started() -> bool:
        pod = await wirelet.pod("many")
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        done = [s for s in statuses if "terminated" in s["state"]]
        running = [s for s in statuses if "running" in s["state"]]
        return len(done) == CONTAINERS - 1 and len(running) == 1

    await wirelet.wait_for("15 containers done, 1 running", all_started)
    assert len(device.task_ids()) == CONTAINERS

    device.unplug()
    await wirelet.wait_node(node, "False")
    device.plug()
    await wirelet.wait_node(node, "True")
    pages = [m for m in device.received if isinstance(m, ListTasks) and m.cursor > 0]
    assert pages, "the reconnect listed the tasks in several pages"
    pod = await wirelet.pod("many")
    assert pod is not None
    statuses = {s["name"]: s for s in pod["status"]["containerStatuses"]}
    assert "running" in statuses["runs"]["state"]
    assert statuses["runs"]["restartCount"] == 0
