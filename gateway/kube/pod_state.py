"""The pod controller's record of one pod: its API object and where the Kubernetes I/O about it
stands. The controller (gateway.kube.pod_controller) keeps one per pod; the active deadline
(gateway.kube.active_deadline) and the status writes (gateway.kube.status_pipeline) read and
keep their parts of it here. The containers' state lives in the runtime once the pod is handed
over (`synced`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.kube.pod_view import PodView
from gateway.runtime.model import ContainerStatus


@dataclass
class PodState:
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

    def cancel_pending(self) -> None:
        """The pod is going: stop preparing it and forget its deadline."""
        if self.prepare_task:
            self.prepare_task.cancel()
        if self.deadline_timer:
            self.deadline_timer.cancel()
            self.deadline_timer = None
