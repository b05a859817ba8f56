"""A typed, read-only view of a pod object from the API server, parsed once when it arrives.

The controller and the kubelet provider read pods through this view instead of chains of
`(pod.get("spec") or {})`: every field the gateway uses is named and typed here, with the
API's defaults applied in one place. `raw` keeps the object as received (for env resolution,
events and the kubelet API, which serve it unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.kube.quantity import parse_quantity
from gateway.runtime.model import (
    DEFAULT_GRACE_PERIOD_S,
    ContainerPhase,
    ContainerState,
    RestartPolicy,
)

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as the API server writes it, or None."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def app_of(image: str) -> str:
    """`image` names a firmware app: `counter`, `counter:1.0`, `apps/counter` all mean counter."""
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


@dataclass(frozen=True)
class ContainerView:
    """One container or ephemeral container of a pod's spec."""

    raw: Mapping[str, Any]
    name: str
    image: str
    ephemeral: bool

    @property
    def app(self) -> str:
        return app_of(self.image)

    @property
    def working_dir(self) -> str:
        """workingDir ("" when unset): where a command backend (an SSH host) runs it."""
        return str(self.raw.get("workingDir") or "")

    def memory_request(self) -> Decimal:
        """requests.memory (else limits.memory) in bytes; ValueError if not a quantity."""
        return self.request("memory")

    def request(self, resource: str) -> Decimal:
        """requests[resource] (else limits[resource], as the API server defaults it), in base
        units (bytes, cores); ValueError if not a quantity."""
        resources = self.raw.get("resources") or {}
        value = (resources.get("requests") or {}).get(resource) or (
            resources.get("limits") or {}
        ).get(resource)
        return parse_quantity(value) if value else Decimal(0)


@dataclass(frozen=True)
class PriorStatus:
    """What the API's status says of one container (a restarted gateway continues from it)."""

    restart_count: int
    state: ContainerState | None


@dataclass(frozen=True)
class PodView:
    raw: dict[str, Any]
    uid: str
    resource_version: str  # "" when the object carries none
    namespace: str
    name: str
    node_name: str
    phase: str  # status.phase, "" before the first status
    restart_policy: RestartPolicy
    grace_period_s: float  # spec.terminationGracePeriodSeconds
    active_deadline_s: int | None  # spec.activeDeadlineSeconds (None: no deadline)
    # Containers, then ephemeral containers (`kubectl debug`). Ephemeral containers are only
    # ever appended, so indexes (and task ids) stay stable.
    containers: tuple[ContainerView, ...]
    deleting: bool  # metadata.deletionTimestamp is set
    deletion_grace_s: float  # metadata.deletionGracePeriodSeconds
    start_time: datetime | None  # status.startTime: the pod has a status on record
    status: Mapping[str, Any]

    @staticmethod
    def parse(pod: dict[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        containers = tuple(
            ContainerView(c, str(c.get("name", "")), str(c.get("image", "")), ephemeral)
            for key, ephemeral in (("containers", False), ("ephemeralContainers", True))
            for c in spec.get(key) or []
        )
        return PodView(
            raw=pod,
            uid=str(meta["uid"]),
            resource_version=str(meta.get("resourceVersion") or ""),
            namespace=str(meta.get("namespace", "default")),
            name=str(meta.get("name", "")),
            node_name=str(spec.get("nodeName") or ""),
            phase=str(status.get("phase") or ""),
            restart_policy=RestartPolicy(spec.get("restartPolicy") or RestartPolicy.ALWAYS),
            grace_period_s=_seconds(spec.get("terminationGracePeriodSeconds")),
            active_deadline_s=_deadline(spec.get("activeDeadlineSeconds")),
            containers=containers,
            deleting=meta.get("deletionTimestamp") is not None,
            deletion_grace_s=_seconds(meta.get("deletionGracePeriodSeconds")),
            start_time=parse_time(status.get("startTime")),
            status=status,
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def regular_containers(self) -> tuple[ContainerView, ...]:
        return tuple(c for c in self.containers if not c.ephemeral)

    def recorded_status(self, container: str) -> PriorStatus | None:
        """The container's status on record, None if the status does not list it."""
        for key in ("containerStatuses", "ephemeralContainerStatuses"):
            for raw in self.status.get(key) or []:
                if raw.get("name") == container:
                    return PriorStatus(int(raw.get("restartCount", 0)), _state(raw.get("state")))
        return None

    def prior_status(self, container: str) -> PriorStatus:
        return self.recorded_status(container) or PriorStatus(0, None)


def _deadline(value: object) -> int | None:
    # The API server admits only a positive integer; anything else is no deadline.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _seconds(value: object) -> float:
    return DEFAULT_GRACE_PERIOD_S if value is None else float(value)  # type: ignore[arg-type]


def _state(raw: Mapping[str, Any] | None) -> ContainerState | None:
    if not raw:
        return None
    if "running" in raw:
        return ContainerState(
            ContainerPhase.RUNNING, started_at=parse_time(raw["running"].get("startedAt"))
        )
    if "terminated" in raw:
        term = raw["terminated"]
        return ContainerState(
            ContainerPhase.TERMINATED,
            reason=term.get("reason", ""),
            message=term.get("message", ""),
            exit_code=int(term.get("exitCode", 0)),
            started_at=parse_time(term.get("startedAt")),
            finished_at=parse_time(term.get("finishedAt")),
        )
    return ContainerState.waiting(raw.get("waiting", {}).get("reason", ""))
