"""Pods bound to the gateway's nodes: admission, env resolution, hand-off to the device runtime,
status writes and the final delete.

The informer calls `on_pod`; each device's runtime reports back through `changed` and
`finished`. The runtime owns the containers' state from the hand-off on; this controller only
reads it (`DeviceRuntime.snapshot`) to write it to the API server. Beside it, one part each:
gateway.kube.admission (what the node refuses), gateway.kube.active_deadline
(spec.activeDeadlineSeconds), gateway.kube.status_pipeline (status writes, coalesced: many
changes to one pod within a short window become one write, unchanged statuses are never sent)
and gateway.kube.pod_state (the record of one pod they share).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.kube.active_deadline import ActiveDeadlines
from gateway.kube.admission import admission_refusal
from gateway.kube.api import KubeApiError
from gateway.kube.api_retry import retry_delay, retryable
from gateway.kube.env import ContainerConfigError, resolve_command
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.pod_state import PodState
from gateway.kube.pod_status import failed_admission_status, pod_status
from gateway.kube.pod_view import PodView
from gateway.kube.status_pipeline import StatusPipeline
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.model import (
    ContainerState,
    ContainerStatus,
    PodSpecView,
    TaskSpec,
)
from gateway.tasks import TaskSet

log = logging.getLogger(__name__)

# A container waiting for a missing ConfigMap or Secret is re-checked this often (the kubelet
# re-syncs a pod about every 10 s); tests shorten it through config.
CONFIG_RETRY_S = 5.0


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
        self._background = TaskSet("pods")
        self.statuses = StatusPipeline(api, self.pods, self._status_of, self._background.spawn)
        self.deadlines = ActiveDeadlines(
            events, host_ip, write_status=self.statuses.write_soon, due=self._deadline_due
        )
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
                state.cancel_pending()
            if binding and binding.runtime:
                binding.runtime.forget_pod(uid)
            self.statuses.forget(uid)
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
            state.cancel_pending()
            if runtime is None:
                return  # like an unreachable kubelet: stays Terminating until the device is back
            if state.synced:
                runtime.delete_pod(uid, view.deletion_grace_s)
            else:
                self.finished(uid)
            return
        if runtime is None:
            return
        if self.deadlines.past(state, runtime):
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

    def _deadline_due(self, uid: str) -> None:
        if uid in self.pods:
            self._process(uid)

    def _start_prepare(self, state: PodState, runtime: DeviceRuntime) -> None:
        state.prepare_task = self._background.spawn(
            self._prepare(state.view.uid, runtime), f"prepare {state.view.name}"
        )

    def _admit(self, binding: NodeBinding, state: PodState) -> None:
        """The kubelet's admission (gateway.kube.admission) against the node's admitted pods."""
        admitted = self._admitted.setdefault(binding.name, set())
        others = [
            s.view
            for uid in admitted
            if (s := self.pods.get(uid)) is not None and s is not state and not s.view.terminal
        ]
        refusal = admission_refusal(state.view, others, binding.allocatable)
        if refusal is not None:
            self._reject(state, *refusal)
            return
        state.admitted = True
        admitted.add(state.view.uid)

    def _reject(self, state: PodState, reason: str, message: str) -> None:
        state.rejected = True
        self.events.record(ObjectRef.pod(state.view.raw), "Warning", reason, message)
        body = failed_admission_status(reason, message, self.host_ip, datetime.now(UTC))
        self.statuses.write_soon(state.view.uid, body)

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
        if self.deadlines.past(state, runtime):
            return
        if len(state.view.containers) > len(tasks):
            self._process(uid)  # another ephemeral container arrived meanwhile

    # --- runtime callbacks --------------------------------------------------------------------

    def changed(self, uid: str) -> None:
        self.statuses.add(uid)

    def finished(self, uid: str) -> None:
        """Every task of a deleted pod has exited: remove the pod (grace 0, this very UID)."""
        state = self.pods.get(uid)
        if state is None or state.finishing:
            return
        state.finishing = True
        self.statuses.forget(uid)
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
        # One last status write so the terminated states are on record before the object goes.
        await self.statuses.write_last(view.uid, final)
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
                if not retryable(exc):
                    log.error("final delete of %s refused: %s", view.key, exc)
                    state.finishing = False
                    return
                problem: Exception = exc
            except (OSError, TimeoutError) as exc:
                problem = exc
            delay = retry_delay(failures)
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

    async def close(self) -> None:
        self.statuses.close()
        await self._background.stop()
