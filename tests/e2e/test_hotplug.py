"""Hotplug end to end: devices found through a directory of links, unplugged and plugged back in.

The emulated fleet keeps DIR/<device-id> pointing at each device's current tty (as udev keeps
/dev/wirelet/<serial>); the gateway's directory source reports the link appearing and vanishing.
A re-plug gives the device a new tty name; the node (named from the device's own id) must be the
same one, NotReady while unplugged and Ready again after, with its pods per restartPolicy.
"""

from __future__ import annotations

from typing import Any

import pytest

from firmware_protocol import StartTask

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def ready_condition(node: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def starts(wirelet: Wirelet, uid: str) -> int:
    return sum(
        1
        for d in wirelet.fleet.devices
        for m in d.received
        if isinstance(m, StartTask) and m.task_id.startswith(uid)
    )


async def test_replug_under_new_tty_same_node_tasks_kept(wirelet: Wirelet) -> None:
    devices = wirelet.fleet.devices
    nodes = [wirelet.node(d.profile.device_id) for d in devices]
    for node in nodes:
        await wirelet.wait_node(node)
    device, node = devices[1], nodes[1]
    always = await wirelet.create_pod("hp-always", "forever", ["100"], node=node, restart="Always")
    never = await wirelet.create_pod("hp-never", "forever", ["100"], node=node, restart="Never")
    for name in ("hp-always", "hp-never"):
        await wirelet.wait_container(name, lambda c: "running" in c["state"])
    old_tty = device.tty

    device.unplug()
    await wirelet.wait_node(node, "False")
    condition = ready_condition(await wirelet.api.get(f"/api/v1/nodes/{node}"))
    assert condition["reason"] == "DeviceDisconnected"
    for other in (nodes[0], nodes[2]):
        assert await wirelet.node_ready(other) == "True"

    new_tty = device.plug()
    assert new_tty != old_tty
    await wirelet.wait_node(node, "True")
    names = {n["metadata"]["name"] for n in (await wirelet.api.get("/api/v1/nodes"))["items"]}
    assert set(nodes) <= names
    # Never named from the tty: no node of this gateway appeared for the new tty.
    ours = {n for n in names if wirelet.namespace.removeprefix("e2e-") in n}
    assert ours == set(nodes)
    # Same boot: the device kept running both tasks; they were reconciled, not restarted.
    for name, pod in (("hp-always", always), ("hp-never", never)):
        status = await wirelet.wait_container(name, lambda c: "running" in c["state"])
        assert status["status"]["phase"] == "Running"
        assert status["status"]["containerStatuses"][0]["restartCount"] == 0
        assert starts(wirelet, pod["metadata"]["uid"]) == 1


async def test_replugged_board_that_reset_restarts_per_policy(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[2]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("rp-always", "forever", ["100"], node=node, restart="Always")
    await wirelet.create_pod("rp-never", "forever", ["100"], node=node, restart="Never")
    for name in ("rp-always", "rp-never"):
        await wirelet.wait_container(name, lambda c: "running" in c["state"])

    device.unplug()
    await wirelet.wait_node(node, "False")
    device.plug()
    device.reboot()  # the board reset on re-plug (power cycle): its tasks are gone
    await wirelet.wait_node(node, "True")
    pod = await wirelet.wait_container(
        "rp-always", lambda c: c["restartCount"] >= 1 and "running" in c["state"]
    )
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "Lost"
    pod = await wirelet.wait_pod_phase("rp-never", "Failed")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Lost"
