"""DeviceNode, fast: what a device says before it is identified waits (bounded, exits kept) for
the runtime; link up and down become the node's Ready condition and the pods' readiness; close
stops the node's background work. The device is tests/gateway/fakes.py's FakeLink, the API an
in-memory stand-in; the end-to-end suite runs the same paths on a real API server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway import device_node
from gateway.config import GatewayConfig, node_name_for
from gateway.device_node import EARLY_TASKS_LIMIT, DeviceNode, NodeSettings
from gateway.kube.api import KubeApi
from gateway.kube.events import EventRecorder
from gateway.kube.pod_controller import PodController
from gateway.link.events import SessionEvent, TaskExited, TaskLost, TaskOutput, TaskStarted
from gateway.link.state import SessionState
from gateway.logs.config import LogConfig
from gateway.logs.store import LogStore
from gateway.node_registry import NodeRegistry
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.task_ids import TaskName
from tests.gateway.fakes import SLOW_BACKOFF, FakeLink, MemoryApi, until

PATH = "/dev/fake0"


class RecordingRuntime(DeviceRuntime):
    """The real runtime, noting every event the node hands it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[SessionEvent] = []

    def handle(self, event: SessionEvent) -> None:
        self.handled.append(event)
        super().handle(event)


@dataclass
class NodeRig:
    link: FakeLink
    api: MemoryApi
    controller: PodController
    node: DeviceNode
    informer_synced: asyncio.Event
    name: str

    @property
    def runtime(self) -> RecordingRuntime:
        assert isinstance(self.node.runtime, RecordingRuntime)
        return self.node.runtime

    def serving(self) -> tuple[bool, bool]:
        """Whether the pod controller has the node ready, and the runtime the link up."""
        return self.controller.nodes[self.name].node_ready, self.runtime.link_up

    def ready(self) -> list[tuple[str, str, str]]:
        """The node's Ready condition, as each status write sent it: (status, reason, message)."""
        found = []
        for path, body in self.api.patches:
            if path != f"/api/v1/nodes/{self.name}/status":
                continue
            for condition in body["status"]["conditions"]:
                if condition["type"] == "Ready":
                    found.append((condition["status"], condition["reason"], condition["message"]))
        return found


@contextlib.asynccontextmanager
async def node_rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, informer_synced: bool = True
) -> AsyncIterator[NodeRig]:
    monkeypatch.setattr(device_node, "DeviceRuntime", RecordingRuntime)
    api = MemoryApi()
    client: KubeApi = api  # type: ignore[assignment]
    events = EventRecorder(client, "h")  # not run: nothing reads the events here
    controller = PodController(api, events, host_ip="10.0.0.1", config_retry_s=0.01)
    link = FakeLink()
    synced = asyncio.Event()
    if informer_synced:
        synced.set()
    config = GatewayConfig()
    node = DeviceNode(
        PATH,
        link,  # type: ignore[arg-type]
        api=client,
        config=config,
        settings=NodeSettings("10.0.0.1", 10250, SLOW_BACKOFF, owner="gw"),
        controller=controller,
        events=events,
        logs=LogStore(LogConfig(root=tmp_path, fsync=False)),
        informer_synced=synced,
        registry=NodeRegistry(),
    )
    runner = asyncio.create_task(node.run(), name="device node")
    await until("the node listens to its link", lambda: link.started)
    try:
        yield NodeRig(
            link, api, controller, node, synced, node_name_for(config.nodes, link.device_id)
        )
    finally:
        await node.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await controller.close()


def our_task(restart: int = 0) -> str:
    """A task id in the gateway's own form (of a pod this test never creates)."""
    return str(TaskName("0b5e7c4e-0000-4000-8000-000000000001", 0, restart))


# --- before the device is identified -------------------------------------------------------------


async def test_events_before_the_task_list_reach_the_runtime_coalesced_exits_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with node_rig(tmp_path, monkeypatch) as rig:
        rig.link.handshake()
        # A device re-sends its reports as soon as the link is up, before the task list that
        # identifies it: a flood for one task, one report each for more tasks than are kept.
        for _ in range(20_000):
            rig.link.emit(TaskStarted("a"))
            rig.link.emit(TaskExited("a", 0, "exited", 0, 0))
        rig.link.emit(TaskLost("b", "device rebooted"))
        flood = [f"c{i}" for i in range(EARLY_TASKS_LIMIT + 50)]
        for task_id in flood:
            rig.link.emit(TaskStarted(task_id))
        rig.link.emit(TaskExited("a", 3, "exited", 0, 0))  # the last word about "a" after all that
        rig.link.task_list()
        await until("the node is ours", lambda: rig.node.served)
        await until("early events replayed", lambda: rig.runtime.handled)
        kept = EARLY_TASKS_LIMIT - 2  # "a" and "b" came first
        assert rig.runtime.handled == [
            TaskStarted("a"),
            TaskExited("a", 3, "exited", 0, 0),
            TaskLost("b", "device rebooted"),
            *(TaskStarted(task_id) for task_id in flood[:kept]),
        ]
        assert f"the events of {len(flood) - kept} task(s) beyond the first" in caplog.text
        # Replayed once: a later task list hands over nothing again.
        caplog.clear()
        replayed = list(rig.runtime.handled)
        rig.link.task_list()
        rig.link.emit(TaskExited("d", 0, "exited", 0, 0))  # after the list, in order
        await until("handled", lambda: len(rig.runtime.handled) > len(replayed))
        assert rig.runtime.handled == [*replayed, TaskExited("d", 0, "exited", 0, 0)]
        assert "did not fit" not in caplog.text


async def test_output_before_the_task_list_is_spooled_and_acknowledged_not_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node_rig(tmp_path, monkeypatch) as rig:
        task_id = our_task()
        rig.link.handshake()
        rig.link.emit(TaskOutput(task_id, "stdout", 0, b"before the task list\n"))
        rig.link.emit(TaskOutput("not-ours", "stdout", 0, b"x"))  # no pod of any gateway's
        await until("acknowledged once durable", lambda: len(rig.link.acks) == 2)
        assert sorted(rig.link.acks) == sorted([("not-ours", "stdout", 1), (task_id, "stdout", 21)])
        rig.link.task_list()
        await until("the node is ours", lambda: rig.node.served)
        assert not any(isinstance(e, TaskOutput) for e in rig.runtime.handled)


async def test_events_after_the_node_is_ours_go_straight_to_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node_rig(tmp_path, monkeypatch) as rig:
        rig.link.connect()
        await until("the node is ours", lambda: rig.node.served)
        rig.link.emit(TaskExited("a", 1, "exited", 0, 0))
        await until("handled", lambda: rig.runtime.handled)
        assert rig.runtime.handled == [TaskExited("a", 1, "exited", 0, 0)]


async def test_an_exit_reported_before_the_node_is_served_ends_its_adopted_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handshake's task list says a task runs; it ends before the node is claimed (a
    restarted gateway waits for its lease): the exit waits for the pods to be handed over,
    or the pod would be adopted as running and never end."""
    async with node_rig(tmp_path, monkeypatch) as rig:
        uid = "0b5e7c4e-0000-4000-8000-000000000002"
        rig.controller.on_pod(
            "ADDED",
            {
                "metadata": {"uid": uid, "namespace": "ns", "name": "p"},
                "spec": {
                    "nodeName": rig.name,
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry/echo:1.0"}],
                },
            },
        )
        task_id = str(TaskName(uid, 0, 0))
        rig.link.running(task_id)
        rig.link.connect()  # UP, then the task list: running
        rig.link.exit(task_id, 0)  # before the node agent has claimed the node

        def ended() -> bool:
            snapshot = rig.node.runtime.snapshot(uid) if rig.node.runtime else None
            return snapshot is not None and snapshot.containers[0].state.phase.value == "terminated"

        await until("the pod's container ended", ended)


# --- link state -> node conditions ---------------------------------------------------------------


async def test_link_up_and_down_become_the_nodes_ready_condition_and_pod_readiness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node_rig(tmp_path, monkeypatch) as rig:
        rig.link.connect()
        await until("ready", lambda: rig.ready() and rig.ready()[-1][0] == "True")
        assert rig.ready()[-1][1:] == ("KubeletReady", "device link up on /dev/fake")
        assert rig.serving() == (True, True)

        rig.link.set_state(SessionState.DOWN, "cable pulled")
        await until("not ready", lambda: rig.ready()[-1][0] == "False")
        assert rig.ready()[-1][1:] == ("DeviceDisconnected", "device link down: cable pulled")
        assert rig.serving() == (False, False)

        rig.link.set_state(SessionState.CONNECTING)  # between the two: no change to the node
        rig.link.handshake()
        await until("ready again", lambda: rig.ready()[-1][0] == "True")
        assert rig.serving() == (True, True)
        changes = [r[0] for i, r in enumerate(rig.ready()) if i == 0 or rig.ready()[i - 1] != r]
        assert changes == ["True", "False", "True"]


async def test_a_link_down_before_the_handshake_is_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with node_rig(tmp_path, monkeypatch) as rig:
        with caplog.at_level(logging.WARNING):
            rig.link.set_state(SessionState.DOWN, "no answer to HELLO")
            await until("logged", lambda: "no answer to HELLO" in caplog.text)
        assert rig.node.agent is None
        assert rig.api.created == []


# --- stopping -----------------------------------------------------------------------------------


async def test_orphans_are_stopped_once_the_informer_has_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node_rig(tmp_path, monkeypatch, informer_synced=False) as rig:
        orphan = our_task()
        rig.link.running(orphan)
        rig.link.connect()
        await until(
            "attached",
            lambda: rig.name in rig.controller.nodes and rig.controller.nodes[rig.name].runtime,
        )
        assert rig.link.stops == []  # the pods are not known yet: it may be one of them
        rig.informer_synced.set()
        await until("orphan stopped", lambda: rig.link.stops)
        assert rig.link.stops == [(orphan, 0.0)]


async def test_close_stops_the_node_agent_and_a_waiting_orphan_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node_rig(tmp_path, monkeypatch, informer_synced=False) as rig:
        rig.link.running(our_task())
        rig.link.connect()
        await until(
            "attached",
            lambda: rig.name in rig.controller.nodes and rig.controller.nodes[rig.name].runtime,
        )
        await until("lease renewed", lambda: rig.node.agent and rig.node.agent.lease.renewals)

        def background() -> list[str]:
            return sorted(
                task.get_name()
                for task in asyncio.all_tasks()
                if task.get_name().startswith(f"{PATH}:") and not task.done()
            )

        assert background() == [f"{PATH}:node {rig.name}", f"{PATH}:orphans {rig.name}"]
        await rig.node.close()
        assert background() == []
        patches = len(rig.api.patches)
        rig.informer_synced.set()  # what the orphan check waited for, too late
        rig.link.set_state(SessionState.DOWN, "after close")
        for _ in range(20):
            await asyncio.sleep(0)
        assert rig.link.stops == []
        assert len(rig.api.patches) == patches  # no status write from a stopped agent
