"""The kubelet API's view of the gateway: pods from the pod controller, logs from the runtime."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import DeviceRejected, LinkError, LinkTimeout
from gateway.kube.pod_controller import PodController
from gateway.kube.quantity import parse_quantity
from gateway.kubelet.errors import ExecFailed, NoContainerLog
from gateway.kubelet.provider import ExecOutcome, ExecOutputSink
from gateway.kubelet.stats import ContainerStats, NodeStats, PodStats
from gateway.link.events import DeviceLoad
from gateway.link.exec_stream import ExecStream, closing
from gateway.logs import LogSource, LogStore
from gateway.logs.timestamps import now_ns
from gateway.runtime.model import ContainerPhase, ContainerStatus

# How long a device may take for a `kubectl exec` command unless configured otherwise.
DEFAULT_EXEC_TIMEOUT_S = 30.0
# Output one `kubectl exec` passes on unless configured otherwise (kubelet.exec_output_limit_bytes).
DEFAULT_EXEC_OUTPUT_LIMIT_BYTES = 1024 * 1024


class DeviceExec(Protocol):
    """What exec needs of a device session (gateway.link.session.DeviceSession)."""

    def exec_stream(
        self,
        argv: Sequence[str],
        timeout_s: float = 10.0,
        task_id: str = "",
        limit_bytes: int | None = None,
    ) -> ExecStream: ...


class GatewayProvider:
    """Implements gateway.kubelet.provider.KubeletProvider over the controller and log store."""

    def __init__(
        self,
        controller: PodController,
        logs: LogStore,
        load_of: Callable[[str], DeviceLoad | None] = lambda _node: None,
        session_of: Callable[[str], DeviceExec | None] = lambda _node: None,
        *,
        exec_timeout_s: float = DEFAULT_EXEC_TIMEOUT_S,
        exec_output_limit_bytes: int = DEFAULT_EXEC_OUTPUT_LIMIT_BYTES,
    ) -> None:
        self.controller = controller
        self.logs = logs
        self.load_of = load_of  # the device's last heartbeat load report, by node name
        self.session_of = session_of  # the device's session while connected, by node name
        self.exec_timeout_s = exec_timeout_s
        self.exec_output_limit_bytes = exec_output_limit_bytes
        self.started_ns = now_ns()

    def node_names(self) -> Sequence[str]:
        return sorted(self.controller.nodes)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        view = self.controller.find_pod(namespace, name)
        return view.raw if view else None

    async def list_pods(self) -> list[dict[str, Any]]:
        return [view.raw for view in self.controller.pod_views()]

    async def find_container_log(
        self, namespace: str, pod: str, container: str
    ) -> LogSource | None:
        view = self.controller.find_pod(namespace, pod)
        if view is None:
            return None
        uid = view.uid
        runtime = self.controller.runtime_of(view.node_name)
        snapshot = runtime.snapshot(uid) if runtime else None
        status = snapshot.container(container) if snapshot else None
        restart: int | None = status.restart_count if status else None
        recorded = view.recorded_status(container) if restart is None else None
        if recorded is not None:
            # Not (or no longer) in the runtime: fall back to what the API's status says.
            restart = recorded.restart_count
        if restart is None:
            return None
        if status is not None and (why := _no_log_yet(status)):
            raise NoContainerLog(f'container "{container}" in pod "{pod}" {why}')

        async def is_running() -> bool:
            current = runtime.snapshot(uid) if runtime else None
            status = current.container(container) if current else None
            return status is not None and status.running

        return self.logs.source(
            namespace, pod, uid, container, restart=restart, is_running=is_running
        )

    async def stats(self) -> Sequence[NodeStats]:
        """Figures from each device's last heartbeat; zeros where the device reports nothing."""
        now = now_ns()
        result = []
        for name, binding in sorted(self.controller.nodes.items()):
            load = self.load_of(name)
            tasks = load.tasks if load else {}
            pods = []
            runtime = binding.runtime
            for record in runtime.snapshots() if runtime else ():
                spec = record.spec
                start = int(record.started_at.timestamp() * 1e9)
                containers = []
                for status in record.containers:
                    figures = tasks.get(status.task_id or "")
                    containers.append(
                        ContainerStats(
                            status.name,
                            start,
                            cpu_usage_nano_cores=figures.cpu_millicores * 1_000_000
                            if figures
                            else 0,
                            memory_working_set_bytes=figures.memory_bytes if figures else 0,
                            memory_usage_bytes=figures.memory_bytes if figures else 0,
                        )
                    )
                pods.append(PodStats(spec.namespace, spec.name, spec.uid, start, tuple(containers)))
            memory = load.memory_bytes if load else 0
            capacity = int(parse_quantity(binding.allocatable.get("memory", "0")))
            result.append(
                NodeStats(
                    name,
                    self.started_ns,
                    load.sampled_ns if load else now,
                    cpu_usage_core_ns=load.cpu_core_ns if load else 0,
                    cpu_usage_nano_cores=(load.cpu_millicores * 1_000_000) if load else 0,
                    memory_working_set_bytes=memory,
                    memory_usage_bytes=memory,
                    memory_available_bytes=max(capacity - memory, 0),
                    pods=tuple(pods),
                )
            )
        return result

    def node_problem(self, node: str) -> str:
        binding = self.controller.nodes.get(node)
        if binding is None:
            return f"node {node} is not served by this gateway"
        if not binding.node_ready:
            return f"the device of node {node} is not connected"
        return ""

    def node_log_files(self, node: str) -> Sequence[Path]:
        if node not in self.controller.nodes:
            return []
        return self.logs.firmware_log(node).files()

    async def running_pods(self) -> list[dict[str, Any]]:
        result = []
        for name, binding in sorted(self.controller.nodes.items()):
            for record in binding.runtime.snapshots() if binding.runtime else ():
                running = [
                    {"name": status.name, "image": status.image}
                    for status in record.containers
                    if status.running
                ]
                if not running:
                    continue
                spec = record.spec
                result.append(
                    {
                        "metadata": {
                            "name": spec.name,
                            "namespace": spec.namespace,
                            "uid": spec.uid,
                        },
                        "spec": {"nodeName": name, "containers": running},
                        "status": {},
                    }
                )
        return result

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        argv: Sequence[str],
        output: ExecOutputSink,
    ) -> ExecOutcome:
        """The device's EXEC in the context of the container's running task, its output passed
        on as it arrives."""
        view = self.controller.find_pod(namespace, pod)
        node = view.node_name if view else ""
        runtime = self.controller.runtime_of(node)
        snapshot = runtime.snapshot(view.uid) if runtime and view else None
        status = snapshot.container(container) if snapshot else None
        task_id = status.task_id if status and status.running else None
        if task_id is None:
            raise ExecFailed(f'container "{container}" in pod "{pod}" is not running')
        session = self.session_of(node)
        if session is None:
            raise ExecFailed(f"the device of node {node} is not connected; try again once it is")
        command = argv[0] if argv else ""
        limit = self.exec_output_limit_bytes
        timeout = self.exec_timeout_s
        raise_it = "raise kubelet.exec_timeout_s in the gateway's config if it needs longer"
        try:
            async with closing(session.exec_stream(argv, timeout, task_id, limit)) as stream:
                async for chunk in stream:
                    await output(chunk.stream, chunk.data)
        except LinkTimeout:
            raise ExecFailed(
                f"{command!r} did not finish on the device of node {node} within "
                f"{timeout:g} s (kubelet.exec_timeout_s), and the device did not answer "
                f"either; {raise_it}"
            ) from None
        except DeviceRejected as exc:
            if exc.code == "TIMEOUT":
                raise ExecFailed(
                    f"the device of node {node} stopped {command!r}: it ran longer than "
                    f"{timeout:g} s (kubelet.exec_timeout_s); {raise_it}"
                ) from None
            raise ExecFailed(f"the device of node {node} refused {command!r}: {exc}") from None
        except LinkError as exc:
            raise ExecFailed(
                f"cannot run {command!r} on the device of node {node}: {exc}"
            ) from None
        end = stream.end
        assert end is not None  # the stream ended without an error: the result is there
        return ExecOutcome(
            end.exit_code,
            truncated=end.truncated,
            limit_bytes=limit if end.limit_reached else None,
            missing_bytes=end.missing_bytes,
        )


# The kubelet's words for why a waiting container has no log (validateContainerLogStatus).
_WAITING_WORDS = {
    "ErrImagePull": "image can't be pulled",
    "ImagePullBackOff": "trying and failing to pull image",
}


def _no_log_yet(status: ContainerStatus) -> str:
    """Why the container has no instance whose log could be shown, "" when it has one: it is
    waiting and never ran, or it ended without ever starting (StartError), as the kubelet
    decides it from the container's state and last state."""
    last = status.last_state
    if last is not None and last.phase is ContainerPhase.TERMINATED:
        return ""
    state = status.state
    if state.phase is ContainerPhase.WAITING:
        return f"is waiting to start: {_WAITING_WORDS.get(state.reason, state.reason)}"
    if state.phase is ContainerPhase.TERMINATED and status.container_id is None:
        return "is terminated"
    return ""
