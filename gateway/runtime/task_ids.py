"""Task ids that name their pod, container and restart, so a restarted gateway can adopt tasks.

`<pod uid>/<container index>/<restart count>` fits the protocol's 48-byte task id limit (a uid is
36 characters) and needs no state on the gateway: the device's task list is enough to rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskName:
    pod_uid: str
    container_index: int
    restart: int

    def __str__(self) -> str:
        return f"{self.pod_uid}/{self.container_index}/{self.restart}"


def parse_task_id(task_id: str) -> TaskName | None:
    """None for ids this gateway did not make (another tool's tasks are left alone)."""
    parts = task_id.split("/")
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return TaskName(parts[0], int(parts[1]), int(parts[2]))
