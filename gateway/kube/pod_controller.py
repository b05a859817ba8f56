"""Pods bound to the gateway's nodes: admission, env resolution, hand-off to the device runtime,
status writes and the final delete.

The informer calls `on_pod`; each device's runtime reports back through `changed` and
`finished`. The runtime owns the containers' state from the hand-off on; this controller only
reads it (`DeviceRuntime.snapshot`) to write it to the API server. Status writes are coalesced
(gateway.kube.coalescing_queue): many changes to one pod within a short window become one PATCH of
the status subresource, and unchanged statuses are never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from gateway.kube.api import KubeApiError
from gateway.kube.coalescing_queue import CoalescingQueue
from gateway.kube.env import ContainerConfigError, resolve_command
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.pod_status import failed_admission_status, pod_status
from gateway.kube.pod_view import PodView
from gateway.kube.quantity import parse_quantity
from gateway.kube.status_write import StatusWriter, another_pod
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.model import (
    ContainerState,
    ContainerStatus,
    PodSpecView,
    TaskSpec,
)
from gateway.tasks import TaskSet

log = logging.getLogger(__name__)

# Changes to a pod within this window are written as one status update.
STATUS_COALESCE_S = 0.05
# A pod's first status (ContainerCreating) waits this long for the change that usually follows
# within milliseconds (the device confirms the start): one write instead of two. A second change
# ends the wait and is written at once (no STATUS_COALESCE_S on top: every pod start paid it); a
# slow or refused start shows its waiting state after this long. In a burst of 1000 pod starts
# a confirmation took over 0.25 s for 10-18 % of pods, each then written twice into the
# API server everyone waits on.
STATUS_FIRST_COALESCE_S = 1.0
# Status writes in flight at once, at least; the gateway raises it with the devices it serves
# (`set_status_writers`), as each kubelet writes its own pods' statuses. A write waits for the
# API server (tens to hundreds of ms on a busy one), so with a fixed few in flight a thousand
# pod starts queue behind each other. The client's QPS limiter paces them further.
STATUS_WRITERS = 8
# A container waiting for a missing ConfigMap or Secret is re-checked this often (the kubelet
# re-syncs a pod about every 10 s); tests shorten it through config.
CONFIG_RETRY_S = 5.0
# A status write or final delete the API server refused in a way that may pass (5xx, 429, a
# timeout, the connection) is retried after this back-off, doubling per failure.
API_RETRY_INITIAL_S = 0.2
API_RETRY_MAX_S = 30.0
# Client errors a retry may cure (credentials or permissions fixed, rate limits); any other
# 4xx is the request's own fault and is never sent again unchanged.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 403, 408, 429})
# The kubelet's words for a pod past spec.activeDeadlineSeconds (its active deadline handler).
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


class PodApi(Protocol):
    """The few API calls the controller makes (gateway.kube.api.KubeApi has them all)."""

    async def get(self, path: str) -> Any: ...

    # answer=False: the controller does not read the answer (see KubeApi.request).
    async def patch(
        self, path: str, body: Any, *, kind: str = "merge", answer: bool = True
    ) -> Any: ...

    async def replace(self, path: str, body: Any, *, answer: bool = True) -> Any: ...

    async def delete(self, path: str, body: Any = None, *, answer: bool = True) -> Any: ...


@dataclass
class NodeBinding:
    """A node this gateway serves; `runtime` is set once its device is up with a task list."""

    name: str
    allocatable: Mapping[str, str]
    runtime: DeviceRuntime | None = None
    node_ready: bool = False


@dataclass
class PodState:
    """The controller's side of one pod: its API object and the Kubernetes I/O about it. The
    containers' state lives in the runtime once the pod is handed over (`synced`)."""

    view: PodView
    admitted: bool = False
    rejected: bool = False
    synced: bool = False  # handed to the runtime
    preparing: list[ContainerStatus] = field(default_factory=list)
    last_status: dict[str, Any] | None = None
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    prepare_task: asyncio.Task[None] | None = None
    finishing: bool = False
    synced_containers: int = 0  # containers and ephemeral containers handed to the runtime
    write_failures: int = 0  # consecutive failed status writes (their back-off)
    # The resourceVersion of the view our last status write was made from: a view still at it
    # is older than the stored pod (gateway.kube.status_write).
    stale_version: str = ""
    deadline_timer: asyncio.TimerHandle | None = None  # spec.activeDeadlineSeconds' expiry
    deadline_exceeded: bool = False


def _cancel_pending(state: PodState) -> None:
    """The pod is going: stop preparing it and forget its deadline."""
    if state.prepare_task:
        state.prepare_task.cancel()
    if state.deadline_timer:
        state.deadline_timer.cancel()
        state.deadline_timer = None


def _retryable(exc: KubeApiError) -> bool:
    return exc.status >= 500 or exc.status in RETRYABLE_CLIENT_ERRORS


class ApiObjectLookup:
    """ConfigMaps and Secrets read from the API server for env resolution."""

    def __init__(self, api: PodApi) -> None:
        self.api = api

    async def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.api.get(path)  # type: ignore[no-any-return]
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = await self._get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        return None if obj is None else dict(obj.get("data") or {})

    async def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = await self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return None if obj is None else dict(obj.get("data") or {})


class PodController:
    def __init__(
        self,
        api: PodApi,
        events: EventRecorder,
        *,
        host_ip: str,
        config_retry_s: float = CONFIG_RETRY_S,
    ) -> None:
        self.api = api
        self.events = events
        self.host_ip = host_ip
        self.config_retry_s = config_retry_s
        self.lookup = ApiObjectLookup(api)
        self.nodes: dict[str, NodeBinding] = {}
        self.pods: dict[str, PodState] = {}
        # Admitted pods by node name: admission counts a node's pods, and scanning every pod
        # of the gateway for each new one made a 1000-pod start quadratic.
        self._admitted: dict[str, set[str]] = {}
        # Pods whose status is to be written, by uid (pods yet without a status on record
        # wait STATUS_FIRST_COALESCE_S), at most one write per pod in flight.
        self.status_queue: CoalescingQueue[str] = CoalescingQueue(
            STATUS_COALESCE_S, STATUS_FIRST_COALESCE_S
        )
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # uid -> its status write
        self.status_writers = STATUS_WRITERS
        self._writer_slot_freed: asyncio.Event | None = None
        self.status_writer = StatusWriter(api)
        self.status_writes = 0
        self.status_skipped = 0
        self._background = TaskSet("pods")
        self.on_node_added: Callable[[str], None] | None = None

    # --- nodes --------------------------------------------------------------------------------

    def wants(self, node_name: str) -> bool:
        return node_name in self.nodes

    def add_node(self, binding: NodeBinding) -> None:
        self.nodes[binding.name] = binding
        if self.on_node_added is not None:
            self.on_node_added(binding.name)  # the informer hands over pods already bound

    def _on_node(self, node_name: str) -> Iterator[tuple[str, PodState]]:
        return ((uid, s) for uid, s in list(self.pods.items()) if s.view.node_name == node_name)

    def attach_runtime(self, node_name: str, runtime: DeviceRuntime, known_pods: bool) -> None:
        """The device is up and its tasks are listed: hand it every pod bound to it.

        `known_pods` says the informer has listed once, so device tasks of pods absent from the
        API are orphans and may be stopped.
        """
        binding = self.nodes[node_name]
        binding.runtime = runtime
        for uid, _state in self._on_node(node_name):
            self._process(uid)
        if known_pods:
            self.stop_orphans(node_name)

    def detach_runtime(self, node_name: str) -> None:
        """The node's runtime is gone (its device answers on another of the gateway's paths):
        its pods wait, unsynced, for the runtime that `attach_runtime` hands them to next."""
        binding = self.nodes.get(node_name)
        if binding is None:
            return
        binding.runtime = None
        binding.node_ready = False
        for _uid, state in self._on_node(node_name):
            if state.prepare_task is not None:
                state.prepare_task.cancel()
                state.prepare_task = None
            state.synced = False
            state.synced_containers = 0

    def stop_orphans(self, node_name: str) -> None:
        """Stop the device's tasks whose pods the API no longer has (after the first list)."""
        runtime = self.nodes[node_name].runtime
        if runtime is not None:
            runtime.stop_orphans({uid for uid, _state in self._on_node(node_name)})

    def set_node_ready(self, node_name: str, ready: bool) -> None:
        binding = self.nodes.get(node_name)
        if binding is None:
            return
        binding.node_ready = ready
        for uid, _state in self._on_node(node_name):
            self.changed(uid)

    # --- what the kubelet API reads -----------------------------------------------------------

    def pod_views(self) -> list[PodView]:
        return [state.view for state in self.pods.values()]

    def find_pod(self, namespace: str, name: str) -> PodView | None:
        for state in self.pods.values():
            if (state.view.namespace, state.view.name) == (namespace, name):
                return state.view
        return None

    def runtime_of(self, node_name: str) -> DeviceRuntime | None:
        binding = self.nodes.get(node_name)
        return binding.runtime if binding else None

    # --- informer -----------------------------------------------------------------------------

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        try:
            view = PodView.parse(pod)
        except (KeyError, TypeError, ValueError) as exc:
            # Only a broken API server sends such a pod; it must not stop the informer.
            meta = pod.get("metadata") or {}
            log.error(
                "pod %s/%s: cannot read it (%s: %s); ignored",
                meta.get("namespace"),
                meta.get("name"),
                type(exc).__name__,
                exc,
            )
            return
        uid = view.uid
        if kind == "DELETED":
            state = self.pods.pop(uid, None)
            self._admitted.get(view.node_name, set()).discard(uid)
            binding = self.nodes.get(view.node_name)
            if state:
                _cancel_pending(state)
            if binding and binding.runtime:
                binding.runtime.forget_pod(uid)
            self.status_queue.forget(uid)
            return
        state = self.pods.get(uid)
        if state is None:
            state = PodState(view)
            if view.start_time is not None:
                state.start_time = view.start_time
                state.last_status = dict(view.status)
            self.pods[uid] = state
        state.view = view
        self._process(uid)

    def _process(self, uid: str) -> None:
        state = self.pods[uid]
        view = state.view
        binding = self.nodes.get(view.node_name)
        if binding is None:
            return
        runtime = binding.runtime
        if view.deleting:
            _cancel_pending(state)
            if runtime is None:
                return  # like an unreachable kubelet: stays Terminating until the device is back
            if state.synced:
                runtime.delete_pod(uid, view.deletion_grace_s)
            else:
                self.finished(uid)
            return
        if runtime is None:
            return
        if self._past_deadline(state, runtime):
            return
        if state.synced:
            if len(view.containers) > state.synced_containers and state.prepare_task is None:
                # `kubectl debug` added an ephemeral container: resolve and hand it over.
                self._start_prepare(state, runtime)
            return
        if view.terminal:
            return  # terminal before we saw it (or before a gateway restart): nothing to run
        if not state.admitted and not state.rejected:
            self._admit(binding, state)
        if state.rejected or state.prepare_task is not None:
            return
        self._start_prepare(state, runtime)

    def _past_deadline(self, state: PodState, runtime: DeviceRuntime) -> bool:
        """The kubelet's active deadline: a pod that has not ended and has been active
        (since status.startTime) longer than spec.activeDeadlineSeconds fails with reason
        DeadlineExceeded; its tasks are stopped and nothing restarts. True once that happened."""
        if state.deadline_exceeded:
            return True
        if state.deadline_timer is not None:
            state.deadline_timer.cancel()
            state.deadline_timer = None
        view = state.view
        deadline = view.active_deadline_s
        if deadline is None or view.terminal or state.rejected:
            return False
        left = deadline - (datetime.now(UTC) - state.start_time).total_seconds()
        if left > 0:
            # The deadline may be changed (shortened) on a running pod: each update re-arms.
            loop = asyncio.get_running_loop()
            state.deadline_timer = loop.call_later(left, self._deadline_due, view.uid)
            return False
        if state.synced:
            if not runtime.fail_pod(view.uid, DEADLINE_REASON, DEADLINE_MESSAGE):
                return False  # it ended meanwhile: its own phase stands
        elif state.prepare_task is None or not any(
            c.state.reason == "CreateContainerConfigError" for c in state.preparing
        ):
            # Not handed to the runtime yet: once it is (tasks of a running pod adopted after
            # a gateway restart), `_prepare` asks again and the runtime stops them.
            return False
        else:
            # Waiting for a ConfigMap or Secret: nothing of it runs on the device.
            state.prepare_task.cancel()
            state.prepare_task = None
            state.preparing = []
            state.rejected = True
            body = failed_admission_status(
                DEADLINE_REASON, DEADLINE_MESSAGE, self.host_ip, state.start_time
            )
            self._spawn_write(view.uid, body)
        state.deadline_exceeded = True
        self.events.record(ObjectRef.pod(view.raw), "Normal", DEADLINE_REASON, DEADLINE_MESSAGE)
        return True

    def _deadline_due(self, uid: str) -> None:
        state = self.pods.get(uid)
        if state is not None:
            state.deadline_timer = None
            self._process(uid)

    def _start_prepare(self, state: PodState, runtime: DeviceRuntime) -> None:
        state.prepare_task = self._background.spawn(
            self._prepare(state.view.uid, runtime), f"prepare {state.view.name}"
        )

    def _admit(self, binding: NodeBinding, state: PodState) -> None:
        """The kubelet's admission: reject a pod the node's allocatable cannot hold, or one
        whose spec a device cannot honour."""
        init = [str(c.get("name")) for c in state.view.raw["spec"].get("initContainers") or []]
        if init:
            # Running the containers without them would break the pod's contract (an init
            # container is a precondition), so fail clearly as the kubelet does a pod it
            # cannot run.
            self._reject(
                state,
                "InitContainersNotSupported",
                f"init containers ({', '.join(init)}) cannot run on a wirelet device node; "
                "do their work in the pod's containers or schedule the pod on another node",
            )
            return
        admitted = self._admitted.setdefault(binding.name, set())
        others = [
            s
            for uid in admitted
            if (s := self.pods.get(uid)) is not None and s is not state and not s.view.terminal
        ]
        # The node's "pods" is the device's task slots, and each container runs as one task:
        # containers are counted, or two pods that each fit would together wait for a slot
        # forever (NO_SLOTS), the later starts refused.
        checks = [
            (
                "pods",
                Decimal(max(len(state.view.regular_containers), 1)),
                Decimal(sum(max(len(s.view.regular_containers), 1) for s in others)),
            )
        ]
        for resource in ("cpu", "memory"):
            try:
                requested = sum(
                    (c.request(resource) for c in state.view.regular_containers), Decimal(0)
                )
                if not requested:
                    continue  # nothing to fit: the others' requests need not be added up
                used = sum(
                    (c.request(resource) for s in others for c in s.view.regular_containers),
                    Decimal(0),
                )
            except ValueError as exc:
                self._reject(state, "InvalidResources", str(exc))
                return
            checks.append((resource, requested, used))
        for resource, want, used_now in checks:
            capacity = parse_quantity(binding.allocatable.get(resource, "0"))
            if used_now + want > capacity:
                # The kubelet's figures: whole numbers, CPU in millicores.
                unit = 1000 if resource == "cpu" else 1
                want_n, used_n, cap_n = (int(q * unit) for q in (want, used_now, capacity))
                slots = " (task slots: each container is one task)" if resource == "pods" else ""
                self._reject(
                    state,
                    f"OutOf{resource}",
                    f"Node didn't have enough resource: {resource}, requested: {want_n}, "
                    f"used: {used_n}, capacity: {cap_n}{slots}",
                )
                return
        state.admitted = True
        admitted.add(state.view.uid)

    def _reject(self, state: PodState, reason: str, message: str) -> None:
        state.rejected = True
        self.events.record(ObjectRef.pod(state.view.raw), "Warning", reason, message)
        body = failed_admission_status(reason, message, self.host_ip, datetime.now(UTC))
        self._spawn_write(state.view.uid, body)

    async def _prepare(self, uid: str, runtime: DeviceRuntime) -> None:
        """Resolve every container's env; wait (retrying) while a mandatory reference is missing."""
        state = self.pods[uid]
        view = state.view
        state.preparing = [
            ContainerStatus(c.name, c.image, ephemeral=c.ephemeral) for c in view.containers
        ]
        warned = False
        while True:
            tasks: list[TaskSpec] = []
            failed = False
            for index, container in enumerate(view.containers):
                try:
                    resolved = await resolve_command(
                        view.raw, container.raw, self.lookup, self.host_ip
                    )
                except ContainerConfigError as exc:
                    failed = True
                    state.preparing[index].state = ContainerState.waiting(
                        "CreateContainerConfigError", str(exc)
                    )
                    if not warned:
                        self.events.record(
                            ObjectRef.pod(view.raw, container.name),
                            "Warning",
                            "Failed",
                            f"Error: {exc}",
                        )
                    continue
                except KubeApiError as exc:
                    failed = True
                    log.warning("resolving env of %s: %s", view.name, exc)
                    continue
                for warning in resolved.warnings:
                    if not warned:
                        self.events.record(
                            ObjectRef.pod(view.raw, container.name),
                            "Warning",
                            "OptionalReferenceMissing",
                            warning,
                        )
                tasks.append(
                    TaskSpec(
                        container=container.name,
                        image=container.image,
                        app=container.app,
                        argv=tuple(resolved.argv),
                        env=tuple(resolved.env),
                        memory_request=int(container.memory_request()),
                        working_dir=container.working_dir,
                        ephemeral=container.ephemeral,
                    )
                )
            if not failed:
                break
            warned = True
            self.changed(uid)
            await asyncio.sleep(self.config_retry_s)
        prior = tuple(
            (p.restart_count, p.state) for p in (view.prior_status(t.container) for t in tasks)
        )
        spec = PodSpecView(
            uid=uid,
            namespace=view.namespace,
            name=view.name,
            node_name=view.node_name,
            restart_policy=view.restart_policy,
            containers=tuple(tasks),
            grace_period_s=view.grace_period_s,
            start_time=state.start_time,
            prior=prior if state.last_status else (),
        )
        state.prepare_task = None
        state.synced = True
        state.synced_containers = len(tasks)
        state.preparing = []
        runtime.sync_pod(spec)
        if self._past_deadline(state, runtime):
            return
        if len(state.view.containers) > len(tasks):
            self._process(uid)  # another ephemeral container arrived meanwhile

    # --- runtime callbacks --------------------------------------------------------------------

    def changed(self, uid: str) -> None:
        state = self.pods.get(uid)
        if state is None:
            return
        self.status_queue.add(uid, first=state.last_status is None)

    def finished(self, uid: str) -> None:
        """Every task of a deleted pod has exited: remove the pod (grace 0, this very UID)."""
        state = self.pods.get(uid)
        if state is None or state.finishing:
            return
        state.finishing = True
        self.status_queue.forget(uid)
        final = self._status_of(uid)  # now: the runtime forgets the pod once this returns
        self._background.spawn(self._final_delete(state, final), f"delete {state.view.name}")

    def runtime_event(
        self, uid: str, container: str | None, kind: str, reason: str, message: str
    ) -> None:
        state = self.pods.get(uid)
        if state is not None:
            self.events.record(ObjectRef.pod(state.view.raw, container), kind, reason, message)

    async def _final_delete(self, state: PodState, final: dict[str, Any] | None) -> None:
        view = state.view
        # One last status write so the terminated states are on record before the object goes;
        # after a write still in flight, which would otherwise land last with older states.
        in_flight = self._in_flight.get(view.uid)
        if in_flight is not None:
            await asyncio.wait([in_flight])
        if final is not None:
            with contextlib.suppress(KubeApiError, OSError, TimeoutError):
                await self._write_status(view.uid, final)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": view.uid},
        }
        path = f"/api/v1/namespaces/{view.namespace}/pods/{view.name}"
        failures = 0
        while self.pods.get(view.uid) is state:
            try:
                await self.api.delete(path, body, answer=False)
                return
            except KubeApiError as exc:
                if exc.not_found or exc.conflict:
                    return  # gone already, or a new pod of the same name: not ours
                if not _retryable(exc):
                    log.error("final delete of %s refused: %s", view.key, exc)
                    state.finishing = False
                    return
                problem: Exception = exc
            except (OSError, TimeoutError) as exc:
                problem = exc
            delay = _backoff(failures)
            failures += 1
            log.warning("final delete of %s: %s; again in %g s", view.name, problem, delay)
            await asyncio.sleep(delay)

    # --- status -------------------------------------------------------------------------------

    def _status_of(self, uid: str) -> dict[str, Any] | None:
        state = self.pods.get(uid)
        if state is None or state.rejected:
            return None
        binding = self.nodes.get(state.view.node_name)
        if binding is None:
            return None
        snapshot = binding.runtime.snapshot(uid) if binding.runtime else None
        failure = None
        containers: Sequence[ContainerStatus]
        if snapshot is not None:
            containers = snapshot.containers
            policy = snapshot.spec.restart_policy
            failure = snapshot.failure
        elif state.preparing:
            containers = state.preparing
            policy = state.view.restart_policy
        else:
            return None
        return pod_status(
            restart_policy=policy,
            containers=containers,
            host_ip=self.host_ip,
            start_time=state.start_time,
            now=datetime.now(UTC),
            node_ready=binding.node_ready,
            previous=state.last_status,
            failure=failure,
        )

    async def _write_status(self, uid: str, body: dict[str, Any] | None = None) -> None:
        state = self.pods.get(uid)
        if state is None:
            return
        status = body if body is not None else self._status_of(uid)
        if status is None:
            return
        if state.last_status == status:
            self.status_skipped += 1
            return
        view = state.view
        try:
            state.stale_version = await self.status_writer.write(
                view, status, stale_version=state.stale_version
            )
        except KubeApiError as exc:
            if exc.not_found or another_pod(exc):
                return  # the pod is gone (or replaced by one of the same name)
            if not _retryable(exc):
                # The same body would be refused again: say so once, write again only when
                # the status changes.
                log.error("status of pod %s refused: %s", view.key, exc)
                state.last_status = status
                return
            raise
        state.last_status = status
        self.status_writes += 1

    def _spawn_write(self, uid: str, body: dict[str, Any]) -> None:
        self._background.spawn(self._write_status(uid, body), f"status {uid}")

    def status_writes_waiting(self) -> bool:
        """Pod statuses queued or being written: the event writers beyond the first give way."""
        return len(self.status_queue) > 0 or bool(self._in_flight)

    def set_status_writers(self, count: int) -> None:
        """Allow `count` status writes in flight at once (never fewer than STATUS_WRITERS);
        writes already in flight finish when it shrinks."""
        self.status_writers = max(STATUS_WRITERS, count)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writer_slot_freed is not None:
            self._writer_slot_freed.set()

    async def run_status_writer(self) -> None:
        """Write queued pods' statuses as a pipeline: each pod once its coalescing window has
        passed, oldest first, up to `status_writers` writes in flight, at most one per pod."""
        freed = self._writer_slot_freed = asyncio.Event()
        busy = 0

        def release(_task: asyncio.Task[None]) -> None:
            nonlocal busy
            busy -= 1
            freed.set()

        while True:
            while busy >= self.status_writers:
                freed.clear()
                await freed.wait()
            uid = await self.status_queue.get()
            busy += 1
            task = self._background.spawn(self._write_queued(uid), f"status {uid}")
            self._in_flight[uid] = task
            task.add_done_callback(release)
            task.add_done_callback(functools.partial(self._write_done, uid))

    def _write_done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(uid) is task:
            del self._in_flight[uid]

    async def _write_queued(self, uid: str) -> None:
        error: Exception | None = None
        try:
            await self._write_status(uid)
        except (KubeApiError, OSError, TimeoutError) as exc:
            error = exc
        state = self.pods.get(uid)
        if state is None or state.finishing:
            self.status_queue.done(uid)
            self.status_queue.forget(uid)
            return
        if error is not None:
            # Back off before the next attempt, whatever changes meanwhile (a change is
            # written by that attempt): a status write that keeps failing must not spin.
            delay = _backoff(state.write_failures)
            state.write_failures += 1
            log.warning("status of pod %s: %s; again in %g s", uid, error, delay)
            self.status_queue.retry_after(uid, delay)
            return
        state.write_failures = 0
        self.status_queue.done(uid)

    async def close(self) -> None:
        self.status_queue.close()
        await self._background.stop()


def _backoff(failures: int) -> float:
    return min(API_RETRY_INITIAL_S * 2.0 ** min(failures, 20), API_RETRY_MAX_S)
