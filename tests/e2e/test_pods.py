"""Pod behaviour on device nodes, each case against the real control plane and pty devices."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import pytest

from firmware_protocol import StartTask, StopTask
from hil.emulator.profile import ALL_APPS

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def first(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][0]  # type: ignore[no-any-return]


def starts_of(wirelet: Wirelet, uid: str) -> list[str]:
    return [
        m.task_id
        for d in wirelet.fleet.devices
        for m in d.received
        if isinstance(m, StartTask) and m.task_id.startswith(uid)
    ]


async def test_restart_always_crash_loops_with_backoff(wirelet: Wirelet) -> None:
    await wirelet.create_pod("crash", "exit", ["1"], restart="Always")
    pod = await wirelet.wait_container("crash", lambda c: c["restartCount"] >= 2)
    status = first(pod)
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert pod["status"]["phase"] == "Running"
    pod = await wirelet.wait_container(
        "crash", lambda c: c["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
    )
    assert "back-off" in first(pod)["state"]["waiting"]["message"]
    reasons = {e["reason"] for e in await wirelet.events_for("crash")}
    assert "BackOff" in reasons


async def test_restart_on_failure_stops_after_success(wirelet: Wirelet) -> None:
    await wirelet.create_pod("once", "exit", ["0"], restart="OnFailure")
    pod = await wirelet.wait_pod_phase("once", "Succeeded")
    assert first(pod)["restartCount"] == 0


async def test_graceful_delete_stops_task_then_pod_is_gone(wirelet: Wirelet) -> None:
    created = await wirelet.create_pod("long", "forever", ["100"], restart="Always")
    await wirelet.wait_container("long", lambda c: "running" in c["state"])
    await wirelet.kubectl("delete", "pod", "-n", wirelet.namespace, "long", "--wait=true")
    assert await wirelet.pod("long") is None
    uid = created["metadata"]["uid"]
    stops = [
        m
        for d in wirelet.fleet.devices
        for m in d.received
        if isinstance(m, StopTask) and m.task_id.startswith(uid)
    ]
    assert stops, "the device never got a STOP"
    assert stops[0].grace_ms == 5000  # terminationGracePeriodSeconds
    reasons = {e["reason"] for e in await wirelet.events_for("long")}
    assert "Killing" in reasons


async def test_force_delete_stops_the_task_at_once(wirelet: Wirelet) -> None:
    created = await wirelet.create_pod("forced", "forever", ["100"], restart="Always")
    pod = await wirelet.wait_container("forced", lambda c: "running" in c["state"])
    device_id = pod["spec"]["nodeName"].removeprefix("wirelet-")
    device = next(d for d in wirelet.fleet.devices if d.device_id.lower() == device_id)
    await wirelet.kubectl(
        "delete", "pod", "-n", wirelet.namespace, "forced", "--grace-period=0", "--force"
    )
    uid = created["metadata"]["uid"]

    async def stopped() -> bool:
        return any(isinstance(m, StopTask) and m.task_id.startswith(uid) for m in device.received)

    await wirelet.wait_for("STOP after force delete", stopped)


async def test_unknown_app_waits_with_reason_listing_apps(wirelet: Wirelet) -> None:
    await wirelet.create_pod("nosuch", "registry.example/blinky:2.0")
    pod = await wirelet.wait_container(
        "nosuch", lambda c: c["state"].get("waiting", {}).get("reason") == "ErrImagePull"
    )
    message = first(pod)["state"]["waiting"]["message"]
    assert 'app "blinky"' in message
    assert "counter" in message  # lists what the device offers
    assert pod["status"]["phase"] == "Pending"
    assert "Failed" in {e["reason"] for e in await wirelet.events_for("nosuch")}


@pytest.mark.device_profile(apps=("echo", "forever"))
async def test_new_firmware_reaches_the_node_and_starts_the_pod_that_waited_for_its_app(
    wirelet: Wirelet,
) -> None:
    """A board re-flashed with firmware that offers the app: the node shows the new firmware
    and boot id (and the kubelet's Rebooted event), and the pod waiting in ErrImagePull /
    ImagePullBackOff starts without waiting out its back-off."""
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("flashed", "counter", ["1000", "100"], node=node)
    await wirelet.wait_container(
        "flashed", lambda c: c["state"].get("waiting", {}).get("reason") == "ErrImagePull"
    )
    before = await wirelet.api.get(f"/api/v1/nodes/{node}")
    device.profile = dataclasses.replace(device.profile, apps=ALL_APPS, firmware_version="0.2.0")
    device.reboot()
    await wirelet.wait_container("flashed", lambda c: "running" in c["state"])

    async def node_updated() -> dict[str, Any] | None:
        got = await wirelet.api.get(f"/api/v1/nodes/{node}")
        labels = got["metadata"]["labels"]
        return got if labels.get("wirelet.io/firmware-version") == "0.2.0" else None

    after = await wirelet.wait_for("the node's new firmware", node_updated)
    assert "counter" in after["metadata"]["annotations"]["wirelet.io/apps"].split(",")
    assert after["status"]["nodeInfo"]["bootID"] != before["status"]["nodeInfo"]["bootID"]
    events = await wirelet.api.get(
        "/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.name={node}"
    )
    rebooted = [e for e in events["items"] if e["reason"] == "Rebooted"]
    assert rebooted and after["status"]["nodeInfo"]["bootID"] in rebooted[0]["message"]


async def test_missing_secret_waits_then_starts_when_created(wirelet: Wirelet) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    await wirelet.create_pod("needs-secret", "echo", ["$(TOKEN)"], env=env)
    pod = await wirelet.wait_container(
        "needs-secret",
        lambda c: c["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError",
    )
    assert 'secret "creds" not found' in first(pod)["state"]["waiting"]["message"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"token": base64.b64encode(b"open-sesame").decode()},
    }
    await wirelet.api.create(f"/api/v1/namespaces/{wirelet.namespace}/secrets", secret)
    await wirelet.wait_pod_phase("needs-secret", "Succeeded")
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "needs-secret")
    assert "open-sesame" in logs


async def test_pod_that_does_not_fit_fails_admission(wirelet: Wirelet) -> None:
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    big = {
        "containers": [
            {"name": "main", "image": "echo", "resources": {"requests": {"memory": "64Mi"}}}
        ]
    }
    await wirelet.create_pod("too-big", "echo", node=node, extra=big)
    pod = await wirelet.wait_pod_phase("too-big", "Failed")
    assert pod["status"]["reason"] == "OutOfmemory"
    assert "Node didn't have enough resource: memory" in pod["status"]["message"]


async def test_a_pod_with_requests_that_fit_runs_and_keeps_its_qos_class(
    wirelet: Wirelet,
) -> None:
    # The API server sets qosClass (Burstable here) at creation and refuses any other value:
    # a status naming BestEffort was refused (422) and the pod stayed Pending for ever.
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    small = {"requests": {"cpu": "100m", "memory": "1Ki"}}
    extra = {"containers": [{"name": "main", "image": "echo", "resources": small}]}
    await wirelet.create_pod("fits", "echo", node=node, extra=extra)
    pod = await wirelet.wait_pod_phase("fits", "Succeeded")
    assert pod["status"]["qosClass"] == "Burstable"


async def test_a_pod_asking_more_cpu_than_the_device_has_fails_out_of_cpu(
    wirelet: Wirelet,
) -> None:
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    extra = {
        "containers": [{"name": "main", "image": "echo", "resources": {"requests": {"cpu": "4"}}}]
    }
    await wirelet.create_pod("cpu-hungry", "echo", node=node, extra=extra)
    pod = await wirelet.wait_pod_phase("cpu-hungry", "Failed")
    assert pod["status"]["reason"] == "OutOfcpu"
    assert "requested: 4000, used: 0, capacity: 1000" in pod["status"]["message"]


async def test_a_pod_with_an_init_container_fails_and_its_containers_never_start(
    wirelet: Wirelet,
) -> None:
    # Init containers were ignored: the main container ran although its init container
    # (a precondition) never did.
    created = await wirelet.create_pod(
        "with-init", "echo", extra={"initContainers": [{"name": "setup", "image": "exit"}]}
    )
    pod = await wirelet.wait_pod_phase("with-init", "Failed")
    assert pod["status"]["reason"] == "InitContainersNotSupported"
    assert "InitContainersNotSupported" in {
        e["reason"] for e in await wirelet.events_for("with-init")
    }
    assert starts_of(wirelet, created["metadata"]["uid"]) == []


async def test_logs_follow_streams_device_output(wirelet: Wirelet) -> None:
    await wirelet.create_pod("ticker", "counter", ["6", "200"])
    await wirelet.wait_container(
        "ticker", lambda c: "running" in c["state"] or "terminated" in c["state"]
    )
    out = await wirelet.kubectl("logs", "-f", "-n", wirelet.namespace, "ticker")
    assert out.split() == ["1", "2", "3", "4", "5", "6"]


async def test_unplug_makes_node_not_ready_and_replug_ready_again(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[1]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    old_tty = device.port.slave_name if hasattr(device.port, "slave_name") else None
    device.unplug()
    await wirelet.wait_node(node, "False")
    obj = await wirelet.api.get(f"/api/v1/nodes/{node}")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "DeviceDisconnected"
    new_tty = device.replug()
    assert new_tty != old_tty
    await wirelet.wait_node(node, "True")


async def test_pods_on_several_devices_at_once(wirelet: Wirelet) -> None:
    # Placed by name, two per device: where the scheduler puts unpinned pods depends on which
    # nodes its cache holds yet and on ties between them (CI once had all six on one node).
    nodes = [wirelet.node(d.profile.device_id) for d in wirelet.fleet.devices]
    for node in nodes:
        await wirelet.wait_node(node)
    names = [f"par-{i}" for i in range(6)]
    await asyncio.gather(
        *(wirelet.create_pod(n, "echo", [n], node=nodes[i % 3]) for i, n in enumerate(names))
    )
    pods = await asyncio.gather(*(wirelet.wait_pod_phase(n, "Succeeded") for n in names))
    assert [p["spec"]["nodeName"] for p in pods] == [nodes[i % 3] for i in range(6)]
    for name in names:
        assert (await wirelet.kubectl("logs", "-n", wirelet.namespace, name)).split() == [
            "argv:",
            name,
        ]


@pytest.mark.gateway_config(nodes={"remove_after_s": 1.0})
async def test_node_of_a_device_gone_too_long_is_removed_and_comes_back(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[2]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    device.unplug()
    await wirelet.wait_node(node, "Missing")
    device.replug()
    await wirelet.wait_node(node, "True")


async def test_device_reboot_loses_task_and_restart_policy_restarts_it(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("rebooted", "forever", ["100"], node=node, restart="Always")
    await wirelet.wait_container("rebooted", lambda c: "running" in c["state"])
    device.reboot()
    pod = await wirelet.wait_container(
        "rebooted", lambda c: c["restartCount"] >= 1 and "running" in c["state"]
    )
    last = first(pod)["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("Lost", 137)
    assert "TaskLost" in {e["reason"] for e in await wirelet.events_for("rebooted")}


async def test_never_policy_pod_lost_in_reboot_fails(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[1]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("once-lost", "forever", ["100"], node=node, restart="Never")
    await wirelet.wait_container("once-lost", lambda c: "running" in c["state"])
    device.reboot()
    pod = await wirelet.wait_pod_phase("once-lost", "Failed")
    assert first(pod)["state"]["terminated"]["reason"] == "Lost"


@pytest.mark.device_profile(task_slots=1)
@pytest.mark.gateway_config(nodes={"capacity": {"pods": "5"}})
async def test_device_refusing_a_start_gives_a_clear_waiting_reason(wirelet: Wirelet) -> None:
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("first", "forever", ["100"], node=node, restart="Always")
    await wirelet.wait_container("first", lambda c: "running" in c["state"])
    await wirelet.create_pod("second", "forever", ["100"], node=node, restart="Always")
    pod = await wirelet.wait_container(
        "second", lambda c: c["state"].get("waiting", {}).get("reason") == "RunContainerError"
    )
    assert "slot" in first(pod)["state"]["waiting"]["message"].lower()
    assert "Failed" in {e["reason"] for e in await wirelet.events_for("second")}
