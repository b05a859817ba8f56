"""Pods at the edges of what a device can do: starts too large for it, `kubectl debug`, the
device going away under a running pod. Real control plane, pty devices, real kubectl."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from firmware_protocol import StartTask

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def first(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][0]  # type: ignore[no-any-return]


def starts_of(wirelet: Wirelet, uid: str) -> list[StartTask]:
    return [
        m
        for d in wirelet.fleet.devices
        for m in d.received
        if isinstance(m, StartTask) and m.task_id.startswith(uid)
    ]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["x" * 100_000], [], ["100000 bytes", "at most 255 bytes per argument"]),
        (
            ["go"],
            [{"name": f"VAR_{i}", "value": "v" * 200} for i in range(20)],
            ["20 variable(s)", "at most 512 bytes"],
        ),
    ],
    ids=["huge-arg", "env-over-the-frame"],
)
async def test_a_start_too_large_for_the_device_fails_the_pod(
    wirelet: Wirelet, args: list[str], env: list[dict[str, str]], says: list[str]
) -> None:
    created = await wirelet.create_pod("big", "echo", args, env=env, restart="Always")
    pod = await wirelet.wait_pod_phase("big", "Failed")
    assert pod["status"]["reason"] == "StartError"
    terminated = first(pod)["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)
    for words in says:
        assert words in pod["status"]["message"], pod["status"]["message"]
        assert words in terminated["message"]
    events = await wirelet.events_for("big")
    assert any(e["reason"] == "Failed" and says[0] in e["message"] for e in events)
    assert starts_of(wirelet, created["metadata"]["uid"]) == []  # refused before sending
    await wirelet.kubectl("delete", "pod", "-n", wirelet.namespace, "big", "--wait=true")


async def test_kubectl_debug_runs_an_ephemeral_container_as_a_task(wirelet: Wirelet) -> None:
    await wirelet.create_pod("target", "forever", ["100"], restart="Always")
    await wirelet.wait_container("target", lambda c: "running" in c["state"])
    await wirelet.kubectl(
        "debug", "-n", wirelet.namespace, "target", "--image=echo", "-c", "dbg", "--", "hello"
    )

    async def debugged() -> Any:
        pod = await wirelet.pod("target")
        statuses = ((pod or {}).get("status") or {}).get("ephemeralContainerStatuses") or []
        done = statuses and "terminated" in statuses[0]["state"]
        return pod if done else None

    pod = await wirelet.wait_for("the ephemeral container ran", debugged)
    status = pod["status"]["ephemeralContainerStatuses"][0]
    assert status["name"] == "dbg"
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["containerID"].startswith("wirelet://")
    assert pod["status"]["phase"] == "Running"  # the pod itself carries on
    assert [c["name"] for c in pod["status"]["containerStatuses"]] == ["main"]
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "target", "-c", "dbg")
    assert "argv: hello" in logs

    # An image the device does not offer: a clear waiting reason and an event.
    await wirelet.kubectl("debug", "-n", wirelet.namespace, "target", "--image=busybox", "-c", "bb")

    async def waiting() -> Any:
        pod = await wirelet.pod("target")
        statuses = ((pod or {}).get("status") or {}).get("ephemeralContainerStatuses") or []
        by_name = {s["name"]: s for s in statuses}
        bb = by_name.get("bb", {}).get("state", {}).get("waiting", {})
        return bb if bb.get("reason") == "ErrImagePull" else None

    reason = await wirelet.wait_for("bb waits", waiting)
    assert 'app "busybox"' in reason["message"]
    events = await wirelet.events_for("target")
    assert any(e["reason"] == "Failed" and "busybox" in e["message"] for e in events)


async def test_pod_ready_reason_names_the_node_while_its_device_is_gone(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("away", "forever", ["100"], node=node, restart="Always")
    pod = await wirelet.wait_container("away", lambda c: "running" in c["state"])
    assert first(pod)["containerID"].startswith("wirelet://")
    device.unplug()

    async def unready() -> Any:
        pod = await wirelet.pod("away")
        conditions = ((pod or {}).get("status") or {}).get("conditions") or []
        ready: dict[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
        return ready if ready.get("status") == "False" else None

    ready = await wirelet.wait_for("pod unready", unready)
    assert ready["reason"] == "NodeNotReady"
    device.replug()
    await wirelet.wait_node(node)


@pytest.mark.parametrize("waits_for", ["nothing", "a-secret"])
async def test_a_pod_past_its_active_deadline_fails_as_with_the_kubelet(
    wirelet: Wirelet, waits_for: str
) -> None:
    # The kubelet enforces spec.activeDeadlineSeconds (counted from status.startTime): the pod
    # ends Failed with reason DeadlineExceeded, its containers are stopped and never restarted.
    # A pod still waiting to start (here: for a Secret) fails the same way.
    env: list[dict[str, Any]] = []
    if waits_for == "a-secret":
        env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    await wirelet.create_pod(
        "late", "forever", ["100"], env=env, restart="Always", extra={"activeDeadlineSeconds": 3}
    )
    if waits_for == "nothing":
        await wirelet.wait_container("late", lambda c: "running" in c["state"])
    pod = await wirelet.wait_pod_phase("late", "Failed")
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert pod["status"]["message"] == (
        "Pod was active on the node longer than the specified deadline"
    )

    async def deadline_event() -> bool:
        events = await wirelet.events_for("late")
        return any(e["reason"] == "DeadlineExceeded" and e["type"] == "Normal" for e in events)

    await wirelet.wait_for("the DeadlineExceeded event", deadline_event)
    if waits_for == "nothing":
        # The task is stopped (exit 143 on the emulator) and not restarted.
        pod = await wirelet.wait_container("late", lambda c: "terminated" in c["state"])
        assert first(pod)["state"]["terminated"]["exitCode"] == 143
        await asyncio.sleep(1.5)
        later = await wirelet.pod("late")
        assert later is not None and later["status"]["phase"] == "Failed"
        assert first(later)["restartCount"] == 0
        assert "terminated" in first(later)["state"]
    await wirelet.kubectl("delete", "pod", "-n", wirelet.namespace, "late", "--wait=true")


async def test_containers_beyond_the_device_task_slots_fail_admission(wirelet: Wirelet) -> None:
    # Each container is one task and the emulated devices run 4 at once (their `pods`): a pod
    # of 5 could never run whole, nor a pod of 3 beside another of 3 (the later starts would
    # be refused NO_SLOTS and retried forever). Admission counts containers, as the kubelet
    # counts what its node's capacity is made of.
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)

    def containers(count: int) -> dict[str, Any]:
        return {
            "containers": [
                {"name": f"c{i}", "image": "forever", "args": ["100"]} for i in range(count)
            ]
        }

    wide = await wirelet.create_pod("wide", "forever", node=node, extra=containers(5))
    pod = await wirelet.wait_pod_phase("wide", "Failed")
    assert pod["status"]["reason"] == "OutOfpods"
    assert "requested: 5, used: 0, capacity: 4 (task slots" in pod["status"]["message"]
    assert starts_of(wirelet, wide["metadata"]["uid"]) == []  # refused before sending

    await wirelet.create_pod("three", "forever", node=node, extra=containers(3))
    await wirelet.wait_pod_phase("three", "Running")
    await wirelet.create_pod("three-more", "forever", node=node, extra=containers(3))
    pod = await wirelet.wait_pod_phase("three-more", "Failed")
    assert "requested: 3, used: 3, capacity: 4" in pod["status"]["message"]

    async def refused_event() -> bool:
        events = await wirelet.events_for("three-more")
        return any(e["reason"] == "OutOfpods" for e in events)

    await wirelet.wait_for("the OutOfpods event", refused_event)  # events are posted apart


async def test_starts_the_device_refuses_after_a_restart_do_not_count_as_restarts(
    wirelet: Wirelet,
) -> None:
    """A device back from a reboot with fewer task slots refuses some restarts (NO_SLOTS):
    nothing ran, so the restart count stays where the lost instance put it, and the lost
    instance stays the one `kubectl logs --previous` shows. Each refused retry counted as a
    restart (6 after a few seconds of the test's back-off, one per 5 min for good)."""
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    uids = []
    for name in ("first", "second"):
        created = await wirelet.create_pod(name, "forever", ["100"], node=node, restart="Always")
        uids.append(created["metadata"]["uid"])
        await wirelet.wait_container(name, lambda c: "running" in c["state"])
    device.profile = dataclasses.replace(device.profile, task_slots=1)
    device.reboot()

    async def refused_again() -> bool:
        # One pod's start before the reboot, its restart and at least three refused retries.
        return any(len(starts_of(wirelet, uid)) >= 5 for uid in uids)

    await wirelet.wait_for("several refused restarts of one pod", refused_again)
    for name in ("first", "second"):
        status = first(await wirelet.pod(name) or {})
        assert status["restartCount"] == 1, status
        assert status["lastState"]["terminated"]["reason"] == "Lost", status
        out = await wirelet.kubectl("logs", "-n", wirelet.namespace, name, "--previous")
        assert "tick" in out, out
