"""The pod controller's Kubernetes side, fast: admission, hand-over to the runtime, env that
waits for its ConfigMap, coalesced status writes, deletes, resuming after a gateway restart.
The API client is an in-memory stand-in for the three calls the controller makes and the device
is tests/gateway/fakes.py's; the end-to-end suite runs the same paths on a real API server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.kube import status_pipeline
from gateway.kube.api import KubeApi
from gateway.kube.events import EventRecorder
from gateway.kube.pod_controller import NodeBinding, PodController
from gateway.link.events import TaskStarted
from gateway.runtime.model import ContainerPhase
from tests.gateway.fakes import MemoryApi, RuntimeRig, until

NODE = "n"


@dataclass
class ControllerRig:
    api: MemoryApi
    events: EventRecorder
    controller: PodController
    device: RuntimeRig

    def reasons(self) -> list[str]:
        return [item[2] for item in self.events.queue._queue]  # type: ignore[attr-defined]

    def task_of(self, pod: dict[str, Any], index: int = 0) -> str | None:
        snapshot = self.device.runtime.snapshot(pod["metadata"]["uid"])
        if snapshot is None or index >= len(snapshot.containers):
            return None
        status = snapshot.containers[index]
        return status.task_id if status.running else None

    async def settled(self) -> None:
        """Every status change queued so far is written (or found unchanged)."""
        queue = self.controller.statuses.queue
        await until(
            "status writes settled",
            lambda: (
                len(queue) == 0 and not any(queue.processing(uid) for uid in self.controller.pods)
            ),
        )


@contextlib.asynccontextmanager
async def controller_rig(
    tmp_path: Path, allocatable: dict[str, str] | None = None
) -> AsyncIterator[ControllerRig]:
    api = MemoryApi()
    client: KubeApi = api  # type: ignore[assignment]
    events = EventRecorder(client, "h")  # not run: the test reads what it queued
    controller = PodController(api, events, host_ip="10.0.0.1", config_retry_s=0.01)
    controller.add_node(NodeBinding(NODE, allocatable or {"pods": "10", "memory": "1Mi"}))
    device = RuntimeRig.create(tmp_path)
    device.forward = controller
    controller.attach_runtime(NODE, device.runtime, known_pods=True)
    controller.set_node_ready(NODE, True)
    writer = asyncio.create_task(controller.statuses.run(), name="status writer")
    try:
        yield ControllerRig(api, events, controller, device)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await controller.close()
        await device.runtime.close()


def make_pod(
    name: str = "p",
    *,
    memory: str | None = None,
    policy: str = "Never",
    env: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "registry/echo:1.0"}
    if memory is not None:
        container["resources"] = {"requests": {"memory": memory}}
    if env is not None:
        container["env"] = env
    pod: dict[str, Any] = {
        "metadata": {"uid": str(uuid.uuid4()), "namespace": "ns", "name": name},
        "spec": {"nodeName": NODE, "restartPolicy": policy, "containers": [container]},
    }
    if status is not None:
        pod["status"] = status
    return pod


# --- admission --------------------------------------------------------------------------------


async def test_a_pod_beyond_the_nodes_pod_count_is_rejected(tmp_path: Path) -> None:
    async with controller_rig(tmp_path, {"pods": "1"}) as rig:
        first, second = make_pod("first"), make_pod("second")
        rig.controller.on_pod("ADDED", first)
        rig.controller.on_pod("ADDED", second)
        await until("written", lambda: rig.api.statuses("second"))
        status = rig.api.statuses("second")[-1]
        assert (status["phase"], status["reason"]) == ("Failed", "OutOfpods")
        assert "capacity: 1" in status["message"]
        assert "OutOfpods" in rig.reasons()
        await until("first runs", lambda: rig.task_of(first) is not None)
        assert rig.device.runtime.snapshot(second["metadata"]["uid"]) is None


async def test_containers_count_against_the_nodes_task_slots(tmp_path: Path) -> None:
    """Each container is one task on the device: two pods of 3 containers on 4 slots."""
    async with controller_rig(tmp_path, {"pods": "4"}) as rig:
        first, second = make_pod("first"), make_pod("second")
        for pod in (first, second):
            pod["spec"]["containers"] = [
                {"name": f"c{i}", "image": "registry/echo:1.0"} for i in range(3)
            ]
        rig.controller.on_pod("ADDED", first)
        rig.controller.on_pod("ADDED", second)
        await until("written", lambda: rig.api.statuses("second"))
        status = rig.api.statuses("second")[-1]
        assert (status["phase"], status["reason"]) == ("Failed", "OutOfpods")
        assert "requested: 3, used: 3, capacity: 4 (task slots" in status["message"]
        assert rig.controller.pods[first["metadata"]["uid"]].admitted


@pytest.mark.parametrize(
    ("memory", "reason"), [("2Mi", "OutOfmemory"), ("lots", "InvalidResources")]
)
async def test_memory_requests_are_admitted_against_allocatable(
    tmp_path: Path, memory: str, reason: str
) -> None:
    async with controller_rig(tmp_path) as rig:  # 1Mi allocatable
        fits, refused = make_pod("fits", memory="512Ki"), make_pod("refused", memory=memory)
        rig.controller.on_pod("ADDED", fits)
        rig.controller.on_pod("ADDED", refused)
        await until("written", lambda: rig.api.statuses("refused"))
        assert rig.api.statuses("refused")[-1]["reason"] == reason
        assert rig.controller.pods[fits["metadata"]["uid"]].admitted


async def test_cpu_requests_are_admitted_against_allocatable(tmp_path: Path) -> None:
    async with controller_rig(tmp_path, {"pods": "10", "cpu": "1"}) as rig:
        fits, refused = make_pod("fits"), make_pod("refused")
        fits["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "600m"}}
        refused["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m"}}
        rig.controller.on_pod("ADDED", fits)
        rig.controller.on_pod("ADDED", refused)
        await until("written", lambda: rig.api.statuses("refused"))
        status = rig.api.statuses("refused")[-1]
        assert status["reason"] == "OutOfcpu"
        assert "requested: 500, used: 600, capacity: 1000" in status["message"]
        assert rig.controller.pods[fits["metadata"]["uid"]].admitted


async def test_a_pod_with_init_containers_fails_instead_of_running_without_them(
    tmp_path: Path,
) -> None:
    async with controller_rig(tmp_path) as rig:
        pod = make_pod("init")
        pod["spec"]["initContainers"] = [{"name": "migrate", "image": "registry/exit:1"}]
        rig.controller.on_pod("ADDED", pod)
        await until("written", lambda: rig.api.statuses("init"))
        status = rig.api.statuses("init")[-1]
        assert (status["phase"], status["reason"]) == ("Failed", "InitContainersNotSupported")
        assert "init containers (migrate)" in status["message"]
        assert rig.device.runtime.snapshot(pod["metadata"]["uid"]) is None  # nothing started


async def test_finished_pods_take_no_room(tmp_path: Path) -> None:
    async with controller_rig(tmp_path, {"pods": "1"}) as rig:
        done = make_pod("done", status={"phase": "Succeeded"})
        rig.controller.on_pod("ADDED", done)
        new = make_pod("new")
        rig.controller.on_pod("ADDED", new)
        await until("new runs", lambda: rig.task_of(new) is not None)
        assert rig.device.runtime.snapshot(done["metadata"]["uid"]) is None  # not run again
        assert rig.api.statuses("done") == []


async def test_a_pod_that_cannot_be_read_is_ignored_and_the_rest_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with controller_rig(tmp_path) as rig:
        broken = make_pod("broken", policy="Sometimes")
        rig.controller.on_pod("ADDED", broken)
        assert "pod ns/broken: cannot read it" in caplog.text
        fine = make_pod("fine")
        rig.controller.on_pod("ADDED", fine)
        await until("fine runs", lambda: rig.task_of(fine) is not None)
        assert broken["metadata"]["uid"] not in rig.controller.pods


# --- hand-over and status -----------------------------------------------------------------------


async def test_a_pod_is_handed_to_the_runtime_with_its_env_and_written_running(
    tmp_path: Path,
) -> None:
    async with controller_rig(tmp_path) as rig:
        pod = make_pod(env=[{"name": "WHO", "value": "x"}, {"name": "ME", "value": "$(WHO)y"}])
        rig.controller.on_pod("ADDED", pod)
        await until("running", lambda: rig.task_of(pod) is not None)
        snapshot = rig.device.runtime.snapshot(pod["metadata"]["uid"])
        assert snapshot is not None
        task = snapshot.spec.containers[0]
        assert (task.app, task.env) == ("echo", (("WHO", "x"), ("ME", "xy")))
        await until(
            "written running",
            lambda: [s["phase"] for s in rig.api.statuses("p")][-1:] == ["Running"],
        )
        status = rig.api.statuses("p")[-1]
        assert status["containerStatuses"][0]["ready"] is True


async def test_the_first_status_waits_for_the_start_and_both_are_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_pipeline, "STATUS_FIRST_COALESCE_S", 3600.0)
    async with controller_rig(tmp_path) as rig:
        rig.device.device.confirm_starts = False
        pod = make_pod()
        uid = pod["metadata"]["uid"]
        rig.controller.on_pod("ADDED", pod)
        await until("started", lambda: rig.device.device.starts)
        await until("queued", lambda: uid in rig.controller.statuses.queue)
        assert rig.api.patches == []  # ContainerCreating waits for what follows
        task_id = rig.device.device.starts[0]
        rig.device.runtime.handle(TaskStarted(task_id))  # the device confirms the start
        await until("written", lambda: rig.api.patches)
        await rig.settled()
        assert [s["phase"] for s in rig.api.statuses("p")] == ["Running"]


async def test_a_burst_of_changes_is_one_write_and_an_unchanged_status_none(
    tmp_path: Path,
) -> None:
    async with controller_rig(tmp_path) as rig:
        pod = make_pod()
        rig.controller.on_pod("ADDED", pod)
        await until("running", lambda: rig.task_of(pod) is not None)
        await rig.settled()
        writes = len(rig.api.patches)
        skipped = rig.controller.statuses.skipped
        for _ in range(20):
            rig.controller.changed(pod["metadata"]["uid"])
        await rig.settled()
        assert len(rig.api.patches) == writes  # nothing changed: nothing sent
        assert rig.controller.statuses.skipped == skipped + 1  # and looked at once


async def test_changes_during_a_write_are_written_once_after_it(tmp_path: Path) -> None:
    async with controller_rig(tmp_path) as rig:
        gate = asyncio.Event()
        api_patch = rig.api.patch
        calls = 0

        async def slow_patch(
            path: str, body: Any, *, kind: str = "merge", answer: bool = True
        ) -> Any:
            nonlocal calls
            calls += 1
            await gate.wait()
            return await api_patch(path, body, kind=kind, answer=answer)

        rig.api.patch = slow_patch  # type: ignore[method-assign]
        pod = make_pod(policy="Always")
        uid = pod["metadata"]["uid"]
        rig.controller.on_pod("ADDED", pod)
        await until("a write in flight", lambda: calls == 1)
        rig.device.runtime.link_changed(False)  # changes while the write waits
        rig.device.runtime.link_changed(True)
        rig.controller.changed(uid)
        queue = rig.controller.statuses.queue
        assert queue.processing(uid) and uid not in queue  # never two writes at once
        assert calls == 1
        gate.set()
        await until("the second write", lambda: calls + rig.controller.statuses.skipped >= 2)
        await rig.settled()
        assert calls + rig.controller.statuses.skipped == 2


async def test_a_missing_config_map_holds_the_container_until_it_exists(tmp_path: Path) -> None:
    async with controller_rig(tmp_path) as rig:
        ref = {"configMapKeyRef": {"name": "cfg", "key": "mode"}}
        pod = make_pod(env=[{"name": "MODE", "valueFrom": ref}])
        rig.controller.on_pod("ADDED", pod)

        def waiting_reason() -> str:
            statuses = rig.api.statuses("p")
            if not statuses:
                return ""
            state = statuses[-1]["containerStatuses"][0]["state"]
            return str(state.get("waiting", {}).get("reason", ""))

        await until(
            "config error written", lambda: waiting_reason() == "CreateContainerConfigError"
        )
        assert rig.device.device.starts == []
        assert "Failed" in rig.reasons()
        rig.api.objects["/api/v1/namespaces/ns/configmaps/cfg"] = {"data": {"mode": "fast"}}
        await until("running", lambda: rig.task_of(pod) is not None)
        snapshot = rig.device.runtime.snapshot(pod["metadata"]["uid"])
        assert snapshot is not None and snapshot.spec.containers[0].env == (("MODE", "fast"),)


# --- deletes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("grace", "expected"), [(5, 5.0), (None, 30.0)])
async def test_a_graceful_delete_stops_the_task_then_deletes_the_pod_for_good(
    tmp_path: Path, grace: int | None, expected: float
) -> None:
    async with controller_rig(tmp_path) as rig:
        pod = make_pod()
        uid = pod["metadata"]["uid"]
        rig.controller.on_pod("ADDED", pod)
        await until("running", lambda: rig.task_of(pod) is not None)
        task_id = rig.task_of(pod)
        deleting = {
            **pod,
            "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"},
        }
        if grace is not None:
            deleting["metadata"]["deletionGracePeriodSeconds"] = grace
        rig.controller.on_pod("MODIFIED", deleting)
        await until("deleted", lambda: rig.api.deletes)
        assert rig.device.device.stops == [(task_id, expected)]
        path, body = rig.api.deletes[0]
        assert path == "/api/v1/namespaces/ns/pods/p"
        assert (body["gracePeriodSeconds"], body["preconditions"]) == (0, {"uid": uid})
        # The terminated state is on record before the object goes.
        last = rig.api.statuses("p")[-1]["containerStatuses"][0]
        assert last["state"]["terminated"]["exitCode"] == 143


async def test_a_pod_deleted_before_it_was_handed_over_is_deleted_at_once(
    tmp_path: Path,
) -> None:
    async with controller_rig(tmp_path) as rig:
        pod = make_pod(
            env=[{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k"}}}]
        )
        rig.controller.on_pod("ADDED", pod)
        deleting = {
            **pod,
            "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"},
        }
        rig.controller.on_pod("MODIFIED", deleting)
        await until("deleted", lambda: rig.api.deletes)
        assert rig.device.device.starts == []


async def test_a_force_deleted_pod_is_stopped_at_once(tmp_path: Path) -> None:
    async with controller_rig(tmp_path) as rig:
        pod = make_pod()
        rig.controller.on_pod("ADDED", pod)
        await until("running", lambda: rig.task_of(pod) is not None)
        task_id = rig.task_of(pod)
        rig.controller.on_pod("DELETED", pod)
        await until("stopped", lambda: rig.device.device.stops == [(task_id, 0.0)])
        assert rig.device.runtime.snapshot(pod["metadata"]["uid"]) is None
        assert rig.api.deletes == []  # the object is gone already


# --- a gateway restart --------------------------------------------------------------------------


async def test_a_restarted_gateway_continues_from_the_status_on_record(tmp_path: Path) -> None:
    async with controller_rig(tmp_path) as rig:
        status = {
            "phase": "Running",
            "startTime": "2026-01-01T00:00:00Z",
            "containerStatuses": [
                {
                    "name": "c",
                    "restartCount": 2,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
                }
            ],
        }
        pod = make_pod(policy="Always", status=status)
        uid = pod["metadata"]["uid"]
        rig.controller.on_pod("ADDED", pod)  # the device no longer has its task
        await until("running again", lambda: rig.task_of(pod) == f"{uid}/0/3")
        await until("written", lambda: rig.api.statuses("p"))
        await rig.settled()
        written = rig.api.statuses("p")[-1]
        assert written["startTime"] == "2026-01-01T00:00:00Z"
        container = written["containerStatuses"][0]
        assert container["restartCount"] == 3
        assert container["lastState"]["terminated"]["reason"] == "Lost"
        snapshot = rig.device.runtime.snapshot(uid)
        assert snapshot is not None
        assert snapshot.containers[0].state.phase is ContainerPhase.RUNNING
        assert snapshot.started_at == datetime(2026, 1, 1, tzinfo=UTC)  # one start time
