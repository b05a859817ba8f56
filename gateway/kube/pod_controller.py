"""Pods bound to the gateway's nodes: admission, env resolution, hand-off to the device runtime,
status writes and the final delete.

The informer calls `on_pod`; each device's runtime reports back through `changed` and
`finished`. Status writes are coalesced: many changes to one pod within a short window become one
PATCH of the status subresource, and unchanged statuses are never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.env import ContainerConfigError, resolve_command
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.pod_status import failed_admission_status, pod_status
from gateway.kube.quantity import parse_quantity
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.model import (
    ContainerPhase,
    ContainerState,
    ContainerStatus,
    PodSpecView,
    RestartPolicy,
    TaskSpec,
)

log = logging.getLogger(__name__)

# Changes to a pod within this window are written as one status update.
STATUS_COALESCE_S = 0.05
# A pod's first status (ContainerCreating) waits this long for the change that usually follows
# within milliseconds (the device confirms the start): one write instead of two. A second change
# ends the wait (written STATUS_COALESCE_S later); a slow or refused start shows its waiting
# state after this long.
STATUS_FIRST_COALESCE_S = 0.25
# Status writes in flight at once; the client's QPS limiter paces them further.
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


@dataclass
class NodeBinding:
    """A node this gateway serves; `runtime` is set once its device is up with a task list."""

    name: str
    allocatable: Mapping[str, str]
    runtime: DeviceRuntime | None = None
    node_ready: bool = False


@dataclass
class PodState:
    pod: dict[str, Any]
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


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def _uid(pod: Mapping[str, Any]) -> str:
    return str(_meta(pod)["uid"])


def _node(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _containers(pod: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], bool]]:
    """Every container the pod runs, with whether it is ephemeral (`kubectl debug`). Ephemeral
    containers are only ever appended, so indexes (and task ids) stay stable."""
    spec = pod.get("spec") or {}
    return [(c, False) for c in spec.get("containers") or []] + [
        (c, True) for c in spec.get("ephemeralContainers") or []
    ]


def _retryable(exc: KubeApiError) -> bool:
    return exc.status >= 500 or exc.status in RETRYABLE_CLIENT_ERRORS


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _memory_request(container: Mapping[str, Any]) -> Decimal:
    resources = container.get("resources") or {}
    value = (resources.get("requests") or {}).get("memory") or (resources.get("limits") or {}).get(
        "memory"
    )
    return parse_quantity(value) if value else Decimal(0)


def _app_of(image: str) -> str:
    """`image` names a firmware app: `counter`, `counter:1.0`, `apps/counter` all mean counter."""
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


def _prior_state(raw: Mapping[str, Any] | None) -> ContainerState | None:
    if not raw:
        return None
    if "running" in raw:
        started = raw["running"].get("startedAt")
        return ContainerState(
            ContainerPhase.RUNNING,
            started_at=datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None,
        )
    if "terminated" in raw:
        term = raw["terminated"]

        def stamp(key: str) -> datetime | None:
            value = term.get(key)
            return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

        return ContainerState(
            ContainerPhase.TERMINATED,
            reason=term.get("reason", ""),
            message=term.get("message", ""),
            exit_code=int(term.get("exitCode", 0)),
            started_at=stamp("startedAt"),
            finished_at=stamp("finishedAt"),
        )
    return ContainerState.waiting(raw.get("waiting", {}).get("reason", ""))


class ApiObjectLookup:
    """ConfigMaps and Secrets read from the API server for env resolution."""

    def __init__(self, api: KubeApi) -> None:
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
        api: KubeApi,
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
        # Pods to write, uid -> loop time of the first change since their last write, oldest
        # first: pods with a status on record, and pods yet without one (see
        # STATUS_FIRST_COALESCE_S). A pod being written is in neither: a change during the
        # write goes to _rewrite, and the pod is queued again once the write is done.
        self._dirty: dict[str, float] = {}
        self._dirty_first: dict[str, float] = {}
        self._writing: set[str] = set()
        self._rewrite: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # uid -> its status write
        self._waiter: asyncio.Future[None] | None = None  # the status writer, idle
        self.status_writes = 0
        self.status_skipped = 0
        self._background: set[asyncio.Task[None]] = set()
        self.on_node_added: Callable[[str], None] | None = None

    # --- nodes --------------------------------------------------------------------------------

    def wants(self, node_name: str) -> bool:
        return node_name in self.nodes

    def add_node(self, binding: NodeBinding) -> None:
        self.nodes[binding.name] = binding
        if self.on_node_added is not None:
            self.on_node_added(binding.name)  # the informer hands over pods already bound

    def attach_runtime(self, node_name: str, runtime: DeviceRuntime, known_pods: bool) -> None:
        """The device is up and its tasks are listed: hand it every pod bound to it.

        `known_pods` says the informer has listed once, so device tasks of pods absent from the
        API are orphans and may be stopped.
        """
        binding = self.nodes[node_name]
        binding.runtime = runtime
        for uid, state in list(self.pods.items()):
            if _node(state.pod) == node_name:
                self._process(uid)
        if known_pods:
            self.stop_orphans(node_name)

    def stop_orphans(self, node_name: str) -> None:
        """Stop the device's tasks whose pods the API no longer has (after the first list)."""
        runtime = self.nodes[node_name].runtime
        if runtime is not None:
            runtime.stop_orphans({uid for uid, s in self.pods.items() if _node(s.pod) == node_name})

    def set_node_ready(self, node_name: str, ready: bool) -> None:
        binding = self.nodes.get(node_name)
        if binding is None:
            return
        binding.node_ready = ready
        for uid, state in self.pods.items():
            if _node(state.pod) == node_name:
                self.changed(uid)

    # --- informer -----------------------------------------------------------------------------

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = _uid(pod)
        if kind == "DELETED":
            state = self.pods.pop(uid, None)
            binding = self.nodes.get(_node(pod))
            if state and state.prepare_task:
                state.prepare_task.cancel()
            if binding and binding.runtime:
                binding.runtime.forget_pod(uid)
            self._forget_dirty(uid)
            return
        state = self.pods.get(uid)
        if state is None:
            state = PodState(pod)
            status = pod.get("status") or {}
            if status.get("startTime"):
                state.start_time = datetime.fromisoformat(
                    status["startTime"].replace("Z", "+00:00")
                )
                state.last_status = status
            self.pods[uid] = state
        state.pod = pod
        self._process(uid)

    def _process(self, uid: str) -> None:
        state = self.pods[uid]
        pod = state.pod
        binding = self.nodes.get(_node(pod))
        if binding is None:
            return
        runtime = binding.runtime
        deleting = _meta(pod).get("deletionTimestamp") is not None
        if deleting:
            grace = _meta(pod).get("deletionGracePeriodSeconds")
            grace_s = float(grace) if grace is not None else 30.0
            if state.prepare_task:
                state.prepare_task.cancel()
            if runtime is None:
                return  # like an unreachable kubelet: stays Terminating until the device is back
            if state.synced:
                runtime.delete_pod(uid, grace_s)
            else:
                self.finished(uid)
            return
        if runtime is None:
            return
        if state.synced:
            if len(_containers(pod)) > state.synced_containers and state.prepare_task is None:
                # `kubectl debug` added an ephemeral container: resolve and hand it over.
                state.prepare_task = asyncio.ensure_future(self._prepare(uid, runtime))
                state.prepare_task.set_name(f"prepare {_meta(pod).get('name')}")
            return
        if _phase(pod) in ("Succeeded", "Failed") and not state.synced:
            return  # terminal before we saw it (or before a gateway restart): nothing to run
        if not state.admitted and not state.rejected:
            self._admit(binding, state)
        if state.rejected or state.prepare_task is not None:
            return
        state.prepare_task = asyncio.ensure_future(self._prepare(uid, runtime))
        state.prepare_task.set_name(f"prepare {_meta(pod).get('name')}")

    def _admit(self, binding: NodeBinding, state: PodState) -> None:
        """The kubelet's admission: reject a pod the node's allocatable cannot hold."""
        others = [
            s
            for uid, s in self.pods.items()
            if s is not state
            and _node(s.pod) == binding.name
            and s.admitted
            and _phase(s.pod) not in ("Succeeded", "Failed")
        ]
        checks = [("pods", Decimal(1), Decimal(len(others)))]
        containers = (state.pod.get("spec") or {}).get("containers") or []
        try:
            requested = sum((_memory_request(c) for c in containers), Decimal(0))
            used = sum(
                (
                    _memory_request(c)
                    for s in others
                    for c in (s.pod.get("spec") or {}).get("containers") or []
                ),
                Decimal(0),
            )
        except ValueError as exc:
            self._reject(state, "InvalidResources", str(exc))
            return
        if requested:
            checks.append(("memory", requested, used))
        for resource, want, used_now in checks:
            capacity = parse_quantity(binding.allocatable.get(resource, "0"))
            if used_now + want > capacity:
                self._reject(
                    state,
                    f"OutOf{resource}",
                    f"Node didn't have enough resource: {resource}, requested: {want}, "
                    f"used: {used_now}, capacity: {capacity}",
                )
                return
        state.admitted = True

    def _reject(self, state: PodState, reason: str, message: str) -> None:
        state.rejected = True
        self.events.record(ObjectRef.pod(state.pod), "Warning", reason, message)
        body = failed_admission_status(reason, message, self.host_ip, datetime.now(UTC))
        self._spawn_write(_uid(state.pod), body)

    async def _prepare(self, uid: str, runtime: DeviceRuntime) -> None:
        """Resolve every container's env; wait (retrying) while a mandatory reference is missing."""
        state = self.pods[uid]
        pod = state.pod
        spec = pod.get("spec") or {}
        containers = _containers(pod)
        state.preparing = [
            ContainerStatus(c.get("name", ""), c.get("image", ""), ephemeral=ephemeral)
            for c, ephemeral in containers
        ]
        warned = False
        while True:
            tasks: list[TaskSpec] = []
            failed = False
            for index, (container, ephemeral) in enumerate(containers):
                try:
                    resolved = await resolve_command(pod, container, self.lookup, self.host_ip)
                except ContainerConfigError as exc:
                    failed = True
                    state.preparing[index].state = ContainerState.waiting(
                        "CreateContainerConfigError", str(exc)
                    )
                    if not warned:
                        self.events.record(
                            ObjectRef.pod(pod, container.get("name")),
                            "Warning",
                            "Failed",
                            f"Error: {exc}",
                        )
                    continue
                except KubeApiError as exc:
                    failed = True
                    log.warning("resolving env of %s: %s", _meta(pod).get("name"), exc)
                    continue
                for warning in resolved.warnings:
                    if not warned:
                        self.events.record(
                            ObjectRef.pod(pod, container.get("name")),
                            "Warning",
                            "OptionalReferenceMissing",
                            warning,
                        )
                image = str(container.get("image", ""))
                command = resolved.argv
                tasks.append(
                    TaskSpec(
                        container=str(container.get("name", "")),
                        image=image,
                        app=_app_of(image),
                        argv=tuple(command),
                        env=tuple(resolved.env),
                        memory_request=int(_memory_request(container)),
                        working_dir=str(container.get("workingDir") or ""),
                        ephemeral=ephemeral,
                    )
                )
            if not failed:
                break
            warned = True
            self.changed(uid)
            await asyncio.sleep(self.config_retry_s)
        status = pod.get("status") or {}
        prior_raw = {
            c.get("name"): c
            for key in ("containerStatuses", "ephemeralContainerStatuses")
            for c in status.get(key) or []
        }
        prior = tuple(
            (
                int(prior_raw.get(t.container, {}).get("restartCount", 0)),
                _prior_state(prior_raw.get(t.container, {}).get("state")),
            )
            for t in tasks
        )
        view = PodSpecView(
            uid=uid,
            namespace=str(_meta(pod).get("namespace", "default")),
            name=str(_meta(pod).get("name", "")),
            node_name=_node(pod),
            restart_policy=RestartPolicy(spec.get("restartPolicy") or "Always"),
            containers=tuple(tasks),
            grace_period_s=float(spec.get("terminationGracePeriodSeconds") or 30),
            prior=prior if state.last_status else (),
        )
        state.prepare_task = None
        state.synced = True
        state.synced_containers = len(tasks)
        state.preparing = []
        runtime.sync_pod(view)
        if len(_containers(state.pod)) > len(tasks):
            self._process(uid)  # another ephemeral container arrived meanwhile

    # --- runtime callbacks --------------------------------------------------------------------

    def changed(self, uid: str) -> None:
        state = self.pods.get(uid)
        if state is None:
            return
        now = asyncio.get_running_loop().time()
        if uid in self._writing:
            self._rewrite.setdefault(uid, now)
            return
        if uid in self._dirty:
            return
        if self._dirty_first.pop(uid, None) is not None:
            self._dirty[uid] = now  # the change that follows the first: both in one write
        elif state.last_status is None:
            self._dirty_first[uid] = now
        else:
            self._dirty[uid] = now
        self._signal()

    def _signal(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _forget_dirty(self, uid: str) -> None:
        self._dirty.pop(uid, None)
        self._dirty_first.pop(uid, None)
        self._rewrite.pop(uid, None)

    def finished(self, uid: str) -> None:
        """Every task of a deleted pod has exited: remove the pod (grace 0, this very UID)."""
        state = self.pods.get(uid)
        if state is None or state.finishing:
            return
        state.finishing = True
        self._forget_dirty(uid)
        final = self._status_of(uid)  # now: the runtime forgets the pod once this returns
        task = asyncio.ensure_future(self._final_delete(state, final))
        task.set_name(f"delete {_meta(state.pod).get('name')}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def runtime_event(
        self, uid: str, container: str | None, kind: str, reason: str, message: str
    ) -> None:
        state = self.pods.get(uid)
        if state is not None:
            self.events.record(ObjectRef.pod(state.pod, container), kind, reason, message)

    async def _final_delete(self, state: PodState, final: dict[str, Any] | None) -> None:
        meta = _meta(state.pod)
        # One last status write so the terminated states are on record before the object goes;
        # after a write still in flight, which would otherwise land last with older states.
        in_flight = self._in_flight.get(_uid(state.pod))
        if in_flight is not None:
            await asyncio.wait([in_flight])
        if final is not None:
            with contextlib.suppress(KubeApiError, OSError, TimeoutError):
                await self._write_status(_uid(state.pod), final)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        failures = 0
        while self.pods.get(_uid(state.pod)) is state:
            try:
                await self.api.delete(path, body)
                return
            except KubeApiError as exc:
                if exc.not_found or exc.conflict:
                    return  # gone already, or a new pod of the same name: not ours
                if not _retryable(exc):
                    log.error(
                        "final delete of %s/%s refused: %s", meta["namespace"], meta["name"], exc
                    )
                    state.finishing = False
                    return
                problem: Exception = exc
            except (OSError, TimeoutError) as exc:
                problem = exc
            delay = _backoff(failures)
            failures += 1
            log.warning("final delete of %s: %s; again in %g s", meta["name"], problem, delay)
            await asyncio.sleep(delay)

    # --- status -------------------------------------------------------------------------------

    def _status_of(self, uid: str) -> dict[str, Any] | None:
        state = self.pods.get(uid)
        if state is None or state.rejected:
            return None
        binding = self.nodes.get(_node(state.pod))
        if binding is None:
            return None
        record = binding.runtime.pods.get(uid) if binding.runtime else None
        failure = None
        if record is not None:
            containers = record.containers
            policy = record.spec.restart_policy
            failure = record.failure
        elif state.preparing:
            containers = state.preparing
            policy = RestartPolicy((state.pod.get("spec") or {}).get("restartPolicy") or "Always")
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
        meta = _meta(state.pod)
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        patch = {"metadata": {"uid": meta["uid"]}, "status": status}
        try:
            await self.api.patch(path, patch, kind="merge")
        except KubeApiError as exc:
            if exc.status in (404, 409):
                return  # the pod is gone (or replaced by one of the same name)
            if not _retryable(exc):
                # The same body would be refused again: say so once, write again only when
                # the status changes.
                log.error("status of pod %s/%s refused: %s", meta["namespace"], meta["name"], exc)
                state.last_status = status
                return
            raise
        state.last_status = status
        self.status_writes += 1

    def _spawn_write(self, uid: str, body: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._write_status(uid, body))
        task.set_name(f"status {uid}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run_status_writer(self) -> None:
        """Write dirty pods' statuses as a pipeline: each pod once its coalescing window has
        passed, oldest first, up to STATUS_WRITERS writes in flight, at most one per pod."""
        slots = asyncio.Semaphore(STATUS_WRITERS)
        while True:
            await slots.acquire()
            try:
                uid = await self._next_due()
            except BaseException:
                slots.release()
                raise
            self._writing.add(uid)
            task = asyncio.ensure_future(self._write_queued(uid, slots))
            self._in_flight[uid] = task
            task.add_done_callback(functools.partial(self._write_done, uid))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _next_due(self) -> str:
        """The pod whose coalescing window ends first, once it has ended."""
        loop = asyncio.get_running_loop()
        while True:
            due: float | None = None
            queue: dict[str, float] | None = None
            for candidate, window in (
                (self._dirty, STATUS_COALESCE_S),
                (self._dirty_first, STATUS_FIRST_COALESCE_S),
            ):
                if candidate:
                    since = next(iter(candidate.values()))
                    if due is None or since + window < due:
                        due, queue = since + window, candidate
            if queue is not None and due is not None and due <= loop.time():
                uid = next(iter(queue))
                del queue[uid]
                return uid
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_at(due, _resolve, waiter) if due is not None else None
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._waiter = None

    def _write_done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(uid) is task:
            del self._in_flight[uid]

    async def _write_queued(self, uid: str, slots: asyncio.Semaphore) -> None:
        failed = False
        try:
            await self._write_status(uid)
        except (KubeApiError, OSError, TimeoutError) as exc:
            failed = True
            error = exc
        finally:
            self._writing.discard(uid)
            slots.release()
        state = self.pods.get(uid)
        if state is None or state.finishing:
            self._rewrite.pop(uid, None)
            return
        if failed:
            # Back off before the next attempt, whatever changes meanwhile (a change is
            # written by that attempt): a status write that keeps failing must not spin.
            delay = _backoff(state.write_failures)
            state.write_failures += 1
            log.warning("status of pod %s: %s; again in %g s", uid, error, delay)
            self._rewrite.pop(uid, None)
            self._writing.add(uid)  # changes meanwhile wait for the retry, not a new write
            asyncio.get_running_loop().call_later(delay, self._retry_write, uid)
            return
        state.write_failures = 0
        again = self._rewrite.pop(uid, None)
        if again is not None:
            self._dirty.setdefault(uid, again)
            self._signal()

    def _retry_write(self, uid: str) -> None:
        self._writing.discard(uid)
        self._rewrite.pop(uid, None)
        state = self.pods.get(uid)
        if state is not None and not state.finishing:
            self._dirty.setdefault(uid, asyncio.get_running_loop().time())
            self._signal()

    async def close(self) -> None:
        for state in self.pods.values():
            if state.prepare_task:
                state.prepare_task.cancel()
        tasks = [s.prepare_task for s in self.pods.values() if s.prepare_task]
        tasks += list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _backoff(failures: int) -> float:
    return min(API_RETRY_INITIAL_S * 2.0 ** min(failures, 20), API_RETRY_MAX_S)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
