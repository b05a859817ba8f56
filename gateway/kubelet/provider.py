"""What the kubelet API needs from the rest of the gateway (the runtime layer implements it).

The API server never sees device sessions or transports: it asks this interface for pods,
log locations and figures. Pod objects are plain JSON dicts as the API server serves them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.kubelet.stats import NodeStats
from gateway.logs import LogSource

JsonObject = dict[str, Any]


# Where a command's output goes as it arrives: ("stdout" or "stderr", bytes).
ExecOutputSink = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ExecOutcome:
    """How a one-shot command on a device ended (its output went to the sink)."""

    exit_code: int
    # The device cut the output to fit one frame (a firmware without streamed exec).
    truncated: bool = False
    # The output was cut at this many bytes (kubelet.exec_output_limit_bytes); None if whole.
    limit_bytes: int | None = None
    # Bytes the device reported that never arrived.
    missing_bytes: int = 0


class KubeletProvider(Protocol):
    def node_names(self) -> Sequence[str]:
        """Names of the nodes this gateway serves (one per attached device), stable order."""
        ...

    async def get_pod(self, namespace: str, name: str) -> JsonObject | None:
        """The pod as last seen, if it is bound to one of this gateway's nodes."""
        ...

    async def list_pods(self) -> list[JsonObject]:
        """Every pod bound to one of this gateway's nodes."""
        ...

    async def find_container_log(
        self, namespace: str, pod: str, container: str
    ) -> LogSource | None:
        """Where the container's current instance logs, or None if it has not started yet
        (NoContainerLog instead when the reason is known: the kubelet's words for it).

        The `restart` of the source is the current instance's restart count; `previous`
        requests read `restart - 1` from the same directory.
        """
        ...

    async def stats(self) -> Sequence[NodeStats]:
        """Current figures for each of this gateway's nodes."""
        ...

    def node_problem(self, node: str) -> str:
        """Why the node is not healthy (its device is not connected...), "" when it is."""
        ...

    def node_log_files(self, node: str) -> Sequence[Path]:
        """The node's own log files (its firmware's log), what `/logs/` lists: as a kubelet
        host's /var/log. Names are unique; empty when the device has logged nothing."""
        ...

    async def running_pods(self) -> list[JsonObject]:
        """Pods with a task running on a device, in the kubelet's /runningpods shape: metadata
        name, namespace, uid; spec.nodeName and spec.containers (name, image) of the running
        containers only."""
        ...

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        argv: Sequence[str],
        output: ExecOutputSink,
    ) -> ExecOutcome:
        """Run `argv` on the pod's device, in the context of the container's task, passing
        its output to `output` piece by piece as the device sends it.

        Raises gateway.kubelet.errors.ExecFailed with a message for the user when the device
        cannot run it (link down, refused, timeout)."""
        ...
