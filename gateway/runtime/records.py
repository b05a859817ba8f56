"""What the runtime keeps per pod, and the seam it drives a device through.

`DeviceTasks` is all the runtime asks of a backend (the serial link's `DeviceSession`, or an
SSH host); `PodRecord` is one pod's containers as the runtime tracks them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gateway.link.events import TaskInfo
from gateway.runtime.backoff import PullBackoff, RestartBackoff
from gateway.runtime.model import (
    DEFAULT_GRACE_PERIOD_S,
    ContainerStatus,
    PodSnapshot,
    PodSpecView,
    RestartPolicy,
)

# Exit code the kubelet reports for a container killed by SIGKILL; used when a task is lost.
LOST_EXIT_CODE = 137
# Exit code the kubelet reports for a container that could not be started (StartError).
START_ERROR_EXIT_CODE = 128
# Kubernetes records exit codes as int32 (ContainerStateTerminated.exitCode); the protocol's
# are int64. A status with one beyond is refused by the API server as a whole.
EXIT_CODE_MIN, EXIT_CODE_MAX = -(2**31), 2**31 - 1


def recordable_exit_code(code: int) -> tuple[int, str]:
    """The exit code Kubernetes can record for a device's `code` (the nearest int32), and
    what to say when that is not the device's own figure ("" when it is)."""
    kept = min(max(code, EXIT_CODE_MIN), EXIT_CODE_MAX)
    if kept == code:
        return code, ""
    return (
        kept,
        f"the device reported exit code {code}, beyond the 32-bit exit codes Kubernetes records",
    )


EventSink = Callable[[str, str | None, str, str, str], None]  # uid, container, type, reason, msg


class DeviceTasks(Protocol):
    """The runtime's seam towards a device: all it asks of a backend (the serial link's
    `DeviceSession` today; any other backend implements the same four calls).

    What comes back from the device goes the other way, through the runtime's entry points:
    `handle(event)` for task events (TaskStarted, TaskOutput, TaskExited, TaskLost),
    `reconciled(tasks)` for the task list after each (re)connect, `link_changed(up)`.
    """

    async def start_task(
        self,
        task_id: str,
        app: str,
        argv: Sequence[str],
        env: Sequence[tuple[str, str]],
        *,
        working_dir: str = "",
    ) -> None:
        """Start `app`; return once the device accepted. Refusals raise DeviceRejected with the
        device's code (MALFORMED and TOO_LARGE are permanent: the pod fails); other
        WireletErrors are retried with the restart back-off."""
        ...

    async def stop_task(self, task_id: str, grace_s: float) -> None:
        """Ask a task to end (forced after `grace_s`); return once the device
        reports it ended. DeviceRejected("NO_SUCH_TASK") if it has no such task; any other
        WireletError makes the runtime send the stop again, SessionClosed ends trying."""
        ...

    async def list_tasks(self) -> Sequence[TaskInfo]:
        """The device's tasks now: running ones and ended ones it still remembers."""
        ...

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        """Output of `stream` up to byte `offset` is stored: the device may free it."""
        ...


@dataclass
class PodRecord:
    spec: PodSpecView
    containers: list[ContainerStatus]
    backoffs: list[RestartBackoff]
    started_at: datetime
    deleting: bool = False
    grace_s: float = DEFAULT_GRACE_PERIOD_S
    restart_timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    # Containers whose app the device did not offer: their image pull back-off.
    pull_backoffs: dict[int, PullBackoff] = field(default_factory=dict)
    # (reason, message) once a container can never run: the pod is Failed, nothing restarts.
    failure: tuple[str, str] | None = None

    def snapshot(self) -> PodSnapshot:
        return PodSnapshot(
            self.spec,
            self.started_at,
            tuple(dataclasses.replace(status) for status in self.containers),
            self.failure,
        )

    def policy(self, index: int) -> RestartPolicy:
        """Ephemeral containers are never restarted, whatever the pod's policy."""
        if self.spec.containers[index].ephemeral:
            return RestartPolicy.NEVER
        return self.spec.restart_policy

    def container_name(self, index: int) -> str | None:
        """The container at `index`, if the spec has one there."""
        if index < len(self.spec.containers):
            return self.spec.containers[index].container
        return None
