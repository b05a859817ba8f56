"""The runtime's vocabulary: what a pod asks of a device, and what the device has done about it.

These are plain values shared between the runtime (pods ⇄ device tasks) and the Kubernetes side,
which turns them into API objects. Nothing here talks to a device or to the API server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# Kubernetes' default for terminationGracePeriodSeconds and a delete without a grace period.
DEFAULT_GRACE_PERIOD_S = 30.0


class RestartPolicy(enum.StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"

    def restarts_after(self, exit_code: int | None) -> bool:
        """Whether a container that ended with `exit_code` runs again (the kubelet's rule)."""
        return self is RestartPolicy.ALWAYS or (self is RestartPolicy.ON_FAILURE and exit_code != 0)


@dataclass(frozen=True)
class TaskSpec:
    """One container as the device will run it: the app (from `image`), argv and resolved env."""

    container: str
    image: str  # as written in the pod spec; `app` is the firmware app it names
    app: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    memory_request: int = 0  # bytes, from resources.requests.memory
    working_dir: str = ""  # `workingDir`: used where the backend has directories (SSH hosts)
    # From spec.ephemeralContainers (`kubectl debug`): never restarted, not part of the pod's
    # phase or readiness, reported in status.ephemeralContainerStatuses.
    ephemeral: bool = False


@dataclass(frozen=True)
class PodSpecView:
    """What the runtime needs of a pod bound to one of the gateway's nodes."""

    uid: str
    namespace: str
    name: str
    node_name: str
    restart_policy: RestartPolicy
    containers: tuple[TaskSpec, ...]
    grace_period_s: float = DEFAULT_GRACE_PERIOD_S
    # The pod's start time as the API records it (status.startTime), or when the gateway first
    # saw it: the one start time both the status and the node's stats report.
    start_time: datetime | None = None
    # Per container, what the API's status already says: its restart count and, if it has
    # terminated, that state. A restarted gateway continues from here instead of from zero.
    prior: tuple[tuple[int, ContainerState | None], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class ContainerPhase(enum.StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class ContainerState:
    """One container's state in the kubelet's terms (waiting / running / terminated)."""

    phase: ContainerPhase
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    task_id: str | None = None  # the device task this state is about (its containerID)

    @staticmethod
    def waiting(reason: str, message: str = "") -> ContainerState:
        return ContainerState(ContainerPhase.WAITING, reason=reason, message=message)


@dataclass
class ContainerStatus:
    """The mutable record the runtime keeps per container and the kube side reports."""

    name: str
    image: str
    state: ContainerState = field(
        default_factory=lambda: ContainerState.waiting("ContainerCreating")
    )
    last_state: ContainerState | None = None
    restart_count: int = 0
    ready: bool = False
    task_id: str | None = None  # the device's task while one exists for this container
    ephemeral: bool = False

    @property
    def running(self) -> bool:
        return self.state.phase is ContainerPhase.RUNNING

    @property
    def container_id(self) -> str | None:
        """The task behind the current state: the live one, or the one that terminated."""
        if self.task_id:
            return self.task_id
        if self.state.phase is ContainerPhase.TERMINATED:
            return self.state.task_id
        return None


@dataclass(frozen=True)
class PodSnapshot:
    """A copy of what the runtime holds of one pod, for readers outside it (status, the
    kubelet API): they never see, or change, the runtime's own records."""

    spec: PodSpecView
    started_at: datetime
    containers: tuple[ContainerStatus, ...]
    # (reason, message) once a container can never run: the pod is Failed.
    failure: tuple[str, str] | None

    def container(self, name: str) -> ContainerStatus | None:
        return next((c for c in self.containers if c.name == name), None)
