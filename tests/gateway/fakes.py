"""Small in-memory stand-ins for the two sides of the pod core, for fast unit tests:

- `FakeDevice`: the device side of the runtime's seam (gateway.runtime.records.DeviceTasks).
  It keeps a task table like a device does and confirms starts and stops as a device would;
  the test decides how each task ends (`exit`, `lose`).
- `FakeLink`: a FakeDevice behind the session face a DeviceNode sees (facts, state changes,
  task lists and task reports as session events, through the session's own EventFanout).
- `MemoryApi`: the few API calls the pod controller makes (gateway.kube.pod_controller.PodApi),
  recording what it is sent. It is not an API server: no validation, no watch; the end-to-end
  suite covers the real one.

`RuntimeRig` puts a real DeviceRuntime (and real log store) on a FakeDevice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import DeviceRejected, LinkTimeout, WireletError
from gateway.kube.api import KubeApiError
from gateway.link.events import (
    DeviceFacts,
    DeviceLoad,
    Reconciled,
    SessionEvent,
    SessionStateChanged,
    TaskExited,
    TaskInfo,
    TaskLost,
    TaskStarted,
)
from gateway.link.fanout import EventFanout, EventSubscription
from gateway.link.state import SessionState
from gateway.logs.config import LogConfig
from gateway.logs.store import LogStore
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.model import PodSnapshot, PodSpecView, RestartPolicy, TaskSpec

WAIT = 10.0  # a deadline for things that happen within milliseconds, never a threshold
# The first restart is immediate, the second waits an hour: a test sees CrashLoopBackOff.
SLOW_BACKOFF = BackoffPolicy(initial_s=3600.0, max_s=3600.0)


class RuntimeListener(Protocol):
    def changed(self, uid: str) -> None: ...

    def finished(self, uid: str) -> None: ...

    def runtime_event(
        self, uid: str, container: str | None, kind: str, reason: str, message: str
    ) -> None: ...


async def until(what: str, check: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class FakeDevice:
    """A device's task table in memory. Starts are confirmed (TASK_STARTED) unless the app is in
    `start_errors`; a STOP ends a running task (TASK_EXITED "stopped"), or is answered
    NO_SUCH_TASK for a task the device does not have."""

    def __init__(self) -> None:
        self.runtime: DeviceRuntime | None = None
        self.tasks: dict[str, TaskInfo] = {}
        self.starts: list[str] = []
        self.stops: list[tuple[str, float]] = []
        self.acks: list[tuple[str, str, int]] = []
        self.start_errors: dict[str, WireletError] = {}  # app -> what START answers
        # Apps whose START the device runs but whose answer never arrives (LinkTimeout).
        self.unanswered_starts: set[str] = set()
        self.confirm_starts = True
        # Tasks that take their STOP (answered) but go on running until `exit`: a slow stop.
        self.slow_stops: set[str] = set()

    def _report(self, event: TaskStarted | TaskExited | TaskLost) -> None:
        assert self.runtime is not None
        asyncio.get_running_loop().call_soon(self.runtime.handle, event)

    async def start_task(
        self,
        task_id: str,
        app: str,
        argv: Sequence[str],
        env: Sequence[tuple[str, str]],
        *,
        working_dir: str = "",  # for backends with directories (wt-ssh adds it to the seam)
    ) -> None:
        self.starts.append(task_id)
        error = self.start_errors.get(app)
        if error is not None:
            raise error
        self.tasks[task_id] = TaskInfo(task_id, app, True, None, 0, 0)
        if app in self.unanswered_starts:
            raise LinkTimeout(f"no answer to the start of {task_id}")
        if self.confirm_starts:
            self._report(TaskStarted(task_id))

    async def stop_task(self, task_id: str, grace_s: float) -> None:
        self.stops.append((task_id, grace_s))
        info = self.tasks.get(task_id)
        if info is None or not info.running:
            raise DeviceRejected(f"no task {task_id}", code="NO_SUCH_TASK")
        if task_id not in self.slow_stops:
            self.exit(task_id, 143, "stopped")

    async def list_tasks(self) -> Sequence[TaskInfo]:
        return list(self.tasks.values())

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        self.acks.append((task_id, stream, offset))

    def running(self, task_id: str, app: str = "echo") -> None:
        """A task the device runs (say, since before the gateway restarted)."""
        self.tasks[task_id] = TaskInfo(task_id, app, True, None, 0, 0)

    def ended(self, task_id: str, exit_code: int, app: str = "echo") -> None:
        """A task that ended while nobody listened: only its task list entry tells."""
        self.tasks[task_id] = TaskInfo(task_id, app, False, exit_code, 0, 0)

    def exit(self, task_id: str, exit_code: int, reason: str = "exited") -> None:
        info = self.tasks[task_id]
        self.tasks[task_id] = TaskInfo(task_id, info.app, False, exit_code, 0, 0)
        self._report(TaskExited(task_id, exit_code, reason, 0, 0))

    def lose(self, task_id: str, reason: str = "device rebooted") -> None:
        del self.tasks[task_id]
        self._report(TaskLost(task_id, reason))


class FakeLink(FakeDevice):
    """A FakeDevice as a DeviceNode sees its session: `facts` once the handshake has told them,
    and every state change, task list and task report as an event to its subscribers, in the
    order a session sends them (`connect`: HANDSHAKING, facts, UP, then the task list)."""

    def __init__(self, device_id: str = "dev-1", apps: Sequence[str] = ("echo", "forever")):
        super().__init__()
        self.device_id = device_id
        self.apps = tuple(apps)
        self.facts: DeviceFacts | None = None
        self.load: DeviceLoad | None = None
        self.state = SessionState.CONNECTING
        self.started = False  # start() called: the caller has subscribed (it does so first)
        self._fanout = EventFanout(None, logging.LoggerAdapter(logging.getLogger(__name__)))

    def subscribe(self) -> EventSubscription:
        return self._fanout.subscribe()

    def start(self) -> None:
        self.started = True

    def emit(self, event: SessionEvent) -> None:
        self._fanout.emit(event)

    def _report(self, event: TaskStarted | TaskExited | TaskLost) -> None:
        self.emit(event)

    def set_state(self, new: SessionState, reason: str = "") -> None:
        old, self.state = self.state, new
        self.emit(SessionStateChanged(old, new, reason))

    def handshake(self) -> None:
        """HANDSHAKING, then the facts and UP: the task list follows with `task_list`."""
        self.set_state(SessionState.HANDSHAKING, "fake")
        self.facts = DeviceFacts(
            device_id=self.device_id,
            boot_id=1,
            firmware_name="fake",
            firmware_version="1",
            apps=self.apps,
            task_slots=8,
            memory_bytes=1 << 20,
            arch="fake",
            max_frame=1024,
            window=4,
            protocol_version=1,
            session_id=1,
            transport="serial",
            port="/dev/fake",
        )
        self.set_state(SessionState.UP, "fake")

    def task_list(self) -> None:
        """The handshake's task list: the device's tasks as they are now."""
        listed = tuple(self.tasks.values())
        self.emit(Reconciled(False, tuple(t.task_id for t in listed), (), listed))

    def connect(self) -> None:
        self.handshake()
        self.task_list()


@dataclass
class RuntimeRig:
    """A DeviceRuntime on a FakeDevice, recording what it reports to the Kubernetes side."""

    device: FakeDevice
    runtime: DeviceRuntime
    changed: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    final: dict[str, PodSnapshot] = field(default_factory=dict)
    events: list[tuple[str, str | None, str, str, str]] = field(default_factory=list)
    # Where the reports go on to (the pod controller, in its tests).
    forward: RuntimeListener | None = None

    @staticmethod
    def create(
        tmp_path: Path,
        *,
        apps: Sequence[str] = ("echo", "forever"),
        backoff: BackoffPolicy = SLOW_BACKOFF,
        link_up: bool = True,
        listed: Sequence[TaskInfo] | None = None,
    ) -> RuntimeRig:
        device = FakeDevice()
        rig = RuntimeRig(device, None)  # type: ignore[arg-type]
        rig.runtime = DeviceRuntime(
            device,
            LogStore(LogConfig(root=tmp_path, fsync=False)),
            apps=apps,
            backoff=backoff,
            on_change=rig.on_change,
            on_finished=rig.on_finished,
            on_event=rig.on_event,
            label="fake",
        )
        device.runtime = rig.runtime
        if listed is not None:
            rig.runtime.reconciled(listed)
        if link_up:
            rig.runtime.link_changed(True)
        return rig

    def on_change(self, uid: str) -> None:
        self.changed.append(uid)
        if self.forward is not None:
            self.forward.changed(uid)

    def on_finished(self, uid: str) -> None:
        snapshot = self.runtime.snapshot(uid)
        if snapshot is not None:
            self.final[uid] = snapshot
        self.finished.append(uid)
        if self.forward is not None:
            self.forward.finished(uid)

    def on_event(self, uid: str, container: str | None, kind: str, reason: str, msg: str) -> None:
        self.events.append((uid, container, kind, reason, msg))
        if self.forward is not None:
            self.forward.runtime_event(uid, container, kind, reason, msg)

    def pod(self, uid: str) -> PodSnapshot:
        """The runtime's pod now, or as it was when it finished."""
        snapshot = self.runtime.snapshot(uid) or self.final.get(uid)
        assert snapshot is not None, f"the runtime has no pod {uid}"
        return snapshot

    def reasons(self) -> list[str]:
        return [event[3] for event in self.events]


def pod_spec(
    app: str = "echo",
    *,
    containers: int = 1,
    policy: RestartPolicy = RestartPolicy.NEVER,
    uid: str | None = None,
    ephemeral: int = 0,
    grace_s: float = 30.0,
) -> PodSpecView:
    specs = [TaskSpec(f"c{i}", app, app, (), ()) for i in range(containers)]
    specs += [TaskSpec(f"debug{i}", app, app, (), (), ephemeral=True) for i in range(ephemeral)]
    return PodSpecView(
        uid=uid or str(uuid.uuid4()),
        namespace="ns",
        name="p",
        node_name="n",
        restart_policy=policy,
        containers=tuple(specs),
        grace_period_s=grace_s,
    )


class MemoryApi:
    """The pod controller's API calls, in memory: GETs answered from `objects` (404 otherwise),
    PATCHes, PUTs and DELETEs recorded (and answered from `refuse`, by method, when set)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, Any]] = []
        self.puts: list[tuple[str, Any]] = []
        self._status_bodies: list[tuple[str, Any]] = []  # PATCHed and PUT, in order
        self.deletes: list[tuple[str, Any]] = []
        self.created: list[tuple[str, Any]] = []
        self.refuse: dict[str, int] = {}  # method -> status to answer

    def _answer(self, method: str, path: str) -> None:
        status = self.refuse.get(method)
        if status is not None:
            raise KubeApiError(status, "Refused", {"message": "refused"}, method, path)

    async def get(self, path: str, **query: Any) -> Any:
        self._answer("GET", path)
        if path not in self.objects:
            raise KubeApiError(404, "NotFound", {"message": "not found"}, "GET", path)
        return self.objects[path]

    async def patch(self, path: str, body: Any, *, kind: str = "merge", answer: bool = True) -> Any:
        self._answer("PATCH", path)
        self.patches.append((path, body))
        self._status_bodies.append((path, body))
        return self._merged(path, body)

    async def replace(self, path: str, body: Any, *, answer: bool = True) -> Any:
        self._answer("PUT", path)
        self.puts.append((path, body))
        self._status_bodies.append((path, body))
        return body

    async def delete(self, path: str, body: Any = None, *, answer: bool = True) -> Any:
        self._answer("DELETE", path)
        self.deletes.append((path, body))
        return {}

    async def create(self, path: str, body: Any) -> Any:
        self.created.append((path, body))
        meta = body.get("metadata") or {}
        if "name" not in meta:
            return body
        # Kept, with the fields the API server fills in, for GETs and PATCHes (nodes, leases).
        stored = {**body, "metadata": {**meta, "uid": str(uuid.uuid4()), "resourceVersion": "1"}}
        self.objects[f"{path}/{meta['name']}"] = stored
        return stored

    def _merged(self, path: str, body: Any) -> Any:
        """A stored object with the patch merged one level deep (its status, for `.../status`),
        or the body itself for objects not stored (pods: the tests read what was sent)."""
        base = path.removesuffix("/status")
        stored = self.objects.get(base)
        if stored is None or not isinstance(body, dict):
            return body
        merged = dict(stored)
        for key, value in body.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        meta = merged["metadata"]
        merged["metadata"] = {**meta, "resourceVersion": str(int(meta["resourceVersion"]) + 1)}
        self.objects[base] = merged
        return merged

    def statuses(self, name: str) -> list[dict[str, Any]]:
        """The status bodies written for pod `name`, in order."""
        return [
            body["status"]
            for path, body in self._status_bodies
            if path.endswith(f"/pods/{name}/status")
        ]
