"""Every delete completes: pods with many containers, devices that drop or cannot answer STOP,
many pods force-deleted at once. Real control plane, pty devices."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from firmware_protocol import StopTask

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOLERATE = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]


async def delete_watching(wirelet: Wirelet, name: str) -> list[dict[str, Any]]:
    """`kubectl delete --wait`, returning every version of the pod written meanwhile (the last
    one is the final status the gateway wrote before the pod went)."""
    path = f"/api/v1/namespaces/{wirelet.namespace}/pods"
    selector = f"metadata.name={name}"
    listing = await wirelet.api.get(path, fieldSelector=selector)
    version = listing["metadata"]["resourceVersion"]
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        async for event in wirelet.api.watch(path, version, fieldSelector=selector):
            if event["type"] == "DELETED":
                return
            if event["type"] == "MODIFIED":
                seen.append(event["object"])

    watcher = asyncio.create_task(watch(), name=f"watch {name}")
    try:
        await wirelet.kubectl("delete", "pod", "-n", wirelet.namespace, name, "--wait=true")
        await asyncio.wait_for(watcher, 60)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert await wirelet.pod(name) is None
    return seen


@pytest.mark.device_profile(task_slots=64, max_frame=4096)
async def test_a_fifty_container_pod_runs_and_its_delete_completes(wirelet: Wirelet) -> None:
    # Half the apps exit at once (their exits must all be reported), half run until stopped.
    containers = [
        {"name": f"c{i}", "image": "echo" if i % 2 else "forever", "args": [str(i)]}
        if i % 2
        else {"name": f"c{i}", "image": "forever", "args": ["1000"]}
        for i in range(50)
    ]
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fifty"},
        "spec": {
            "restartPolicy": "Never",
            "containers": containers,
            "nodeSelector": {"type": "virtual-kubelet"},
            "tolerations": TOLERATE,
            "terminationGracePeriodSeconds": 5,
        },
    }
    await wirelet.api.create(f"/api/v1/namespaces/{wirelet.namespace}/pods", body)

    async def settled() -> Any:
        pod = await wirelet.pod("fifty")
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        if len(statuses) != 50:
            return None
        by_name = {s["name"]: s["state"] for s in statuses}
        exited = [by_name[f"c{i}"].get("terminated", {}).get("exitCode") for i in range(1, 50, 2)]
        running = ["running" in by_name[f"c{i}"] for i in range(0, 50, 2)]
        return pod if exited == [0] * 25 and all(running) else None

    await wirelet.wait_for("25 exited and 25 running", settled)
    seen = await delete_watching(wirelet, "fifty")
    final = seen[-1]["status"]["containerStatuses"]
    assert all("terminated" in s["state"] for s in final), [
        (s["name"], s["state"]) for s in final if "terminated" not in s["state"]
    ]
    assert all(s["containerID"].startswith("wirelet://") for s in final)
    for device in wirelet.fleet.devices:
        assert device.running_task_ids() == []


@pytest.mark.device_profile(task_slots=20)
@pytest.mark.gateway_config(link={"stop_slack": 0.5})
async def test_a_force_delete_of_many_pods_stops_every_task(wirelet: Wirelet) -> None:
    names = [f"many-{i}" for i in range(30)]
    await asyncio.gather(
        *(wirelet.create_pod(n, "forever", ["100"], restart="Always") for n in names)
    )
    await asyncio.gather(
        *(wirelet.wait_container(n, lambda c: "running" in c["state"]) for n in names)
    )
    for device in wirelet.fleet.devices:
        device.ignore_stops = 3  # some STOPs vanish in the firmware: they must be sent again
    await wirelet.kubectl(
        "delete", "pods", "-n", wirelet.namespace, "--all", "--grace-period=0", "--force"
    )

    async def all_stopped() -> bool:
        return all(not d.running_task_ids() for d in wirelet.fleet.devices)

    await wirelet.wait_for("every task stopped", all_stopped)
    stops = [m for d in wirelet.fleet.devices for m in d.received if isinstance(m, StopTask)]
    ignored = sum(3 - d.ignore_stops for d in wirelet.fleet.devices)
    assert ignored >= 3  # (how the scheduler spread the pods decides the exact number)
    assert len(stops) >= len(names) + ignored  # every ignored STOP was sent again


@pytest.mark.gateway_config(link={"stop_slack": 0.5})
async def test_a_graceful_delete_completes_when_the_device_forgot_the_task(
    wirelet: Wirelet,
) -> None:
    created = await wirelet.create_pod("forgotten", "forever", ["100"], restart="Always")
    pod = await wirelet.wait_container("forgotten", lambda c: "running" in c["state"])
    device_id = pod["spec"]["nodeName"].removeprefix("wirelet-")
    device = next(d for d in wirelet.fleet.devices if d.device_id.lower() == device_id)
    uid = created["metadata"]["uid"]
    (task_id,) = [t for t in device.running_task_ids() if t.startswith(uid)]
    device.lose_task(task_id)  # no exit report will ever come; STOP gets NO_SUCH_TASK
    seen = await delete_watching(wirelet, "forgotten")
    state = seen[-1]["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["reason"] == "ContainerStatusUnknown"
    assert state["terminated"]["containerID"] == f"wirelet://{task_id}"
