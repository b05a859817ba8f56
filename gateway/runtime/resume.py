"""Where a container stands when the gateway (re)starts: from the API's status, the device's
task list and the instance logs on disk, so a task is never run twice or forgotten.

The device's task list maps task ids (gateway.runtime.task_ids) to what the device knows of
them; these functions read it for one container of a pod record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from gateway.link.events import TaskInfo
from gateway.runtime.model import ContainerPhase, ContainerState
from gateway.runtime.records import LOST_EXIT_CODE, PodRecord, recordable_exit_code
from gateway.runtime.task_ids import TaskName, parse_task_id

DeviceTaskList = Mapping[str, TaskInfo]
# (restart count, the API's state or None): was that instance started before, as its log says?
InstanceUsed = Callable[[int, ContainerState | None], bool]


def latest_restart(tasks: DeviceTaskList, uid: str, index: int) -> int | None:
    """The highest restart count of the device's tasks for this container, if any."""
    restarts = [
        name.restart
        for name in map(parse_task_id, tasks)
        if name is not None and (name.pod_uid, name.container_index) == (uid, index)
    ]
    return max(restarts, default=None)


def device_task(tasks: DeviceTaskList, uid: str, index: int, restart: int) -> TaskInfo | None:
    for task_id, info in tasks.items():
        if parse_task_id(task_id) == TaskName(uid, index, restart):
            return info
    return None


def running_task(tasks: DeviceTaskList, uid: str, index: int) -> tuple[TaskName, TaskInfo] | None:
    """A task of this container the device still runs: adopt it rather than start another."""
    for task_id, info in tasks.items():
        name = parse_task_id(task_id)
        if name and info.running and (name.pod_uid, name.container_index) == (uid, index):
            return name, info
    return None


def resume_prior(
    record: PodRecord, index: int, tasks: DeviceTaskList, instance_used: InstanceUsed
) -> bool:
    """Continue from the API's status after a gateway restart; True if finished for good.
    Without a status on record (the last gateway died before writing it) the device's task
    list tells: its latest task of this container is that status, so a task that ended
    while no gateway listened is never started a second time."""
    state: ContainerState | None
    uid = record.spec.uid
    if index < len(record.spec.prior):
        restarts, state = record.spec.prior[index]
    else:
        latest = latest_restart(tasks, uid, index)
        if latest is None and not instance_used(0, None):
            return False  # never started
        restarts, state = latest or 0, None
    status = record.containers[index]
    status.restart_count = restarts
    info = device_task(tasks, uid, index, restarts)
    if info is not None and info.running:
        return False  # still running on the device: adopted
    now = datetime.now(UTC)
    if info is None and instance_used(restarts, state):
        # A previous gateway started this instance (its log exists) and died before any
        # status said so, and the device no longer knows the task (it rebooted meanwhile):
        # it ran and was lost. Starting its task id again would run it a second time.
        state = ContainerState(ContainerPhase.RUNNING)
    if info is not None:
        # It ended while no gateway listened; the device still knows how.
        code, beyond = recordable_exit_code(
            info.exit_code if info.exit_code is not None else LOST_EXIT_CODE
        )
        state = ContainerState(
            ContainerPhase.TERMINATED,
            reason="Completed" if code == 0 else "Error",
            message="exited while the gateway was away" + (f"; {beyond}" if beyond else ""),
            exit_code=code,
            started_at=state.started_at if state else None,
            finished_at=now,
            task_id=info.task_id,
        )
    if state is None:
        return False  # never started
    if state.phase is ContainerPhase.TERMINATED:
        if not record.policy(index).restarts_after(state.exit_code):
            status.state = state
            return True
        status.last_state = state
    elif state.phase is ContainerPhase.RUNNING:
        lost = ContainerState(
            ContainerPhase.TERMINATED,
            reason="Lost",
            message="the task was gone from the device when the gateway came back",
            exit_code=LOST_EXIT_CODE,
            started_at=state.started_at,
            finished_at=now,
            task_id=str(TaskName(uid, index, restarts)),
        )
        if not record.policy(index).restarts_after(LOST_EXIT_CODE):
            status.state = lost  # as a task lost while the gateway runs: policy applies
            return True
        status.last_state = lost
    elif restarts == 0:
        return False  # waiting, never ran
    status.restart_count = restarts + 1  # the next instance gets a new log file
    return False
