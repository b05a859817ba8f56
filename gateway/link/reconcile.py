"""What a device's task list means for the tasks the session knew, and what a batch of link
events asks of the session. Pure functions: no I/O, no event loop, no session state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import firmware_protocol as wire
from gateway.link.events import Reconciled, TaskExited, TaskInfo, TaskLost

LOST_IN_REBOOT = "device rebooted"
LOST_IN_RECONNECT = "missing on the device after reconnect"
EXITED_WHILE_AWAY = "exited while disconnected"


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The outcome of comparing what the session knew with what the device lists."""

    # TaskLost / TaskExited for each known running task the device no longer runs, in the
    # session's order, then one `Reconciled`.
    events: tuple[TaskLost | TaskExited | Reconciled, ...]
    gone: tuple[str, ...]  # known running tasks that ended (lost, or exited while away)
    adopted: tuple[str, ...]  # running on the device, unknown here: a previous gateway's
    surviving: tuple[str, ...]
    lost: tuple[str, ...]


def reconcile(
    known: Mapping[str, bool],
    listed: Sequence[TaskInfo],
    rebooted: bool,
    exit_reported: Callable[[str], bool] = lambda _task_id: False,
) -> Reconciliation:
    """Compare `known` (task id -> whether the session believes it runs) with the device's
    task list `listed`. A known running task is: running there -> surviving; finished there ->
    `TaskExited(..., "exited while disconnected")` unless its exit was reported
    (`exit_reported`); absent -> `TaskLost`. Running tasks not known are adopted."""
    on_device = {t.task_id: t for t in listed}
    events: list[TaskLost | TaskExited | Reconciled] = []
    gone: list[str] = []
    surviving: list[str] = []
    lost: list[str] = []
    for task_id, running in known.items():
        if not running:
            continue
        info = on_device.get(task_id)
        if info is None:
            lost.append(task_id)
            gone.append(task_id)
            events.append(TaskLost(task_id, LOST_IN_REBOOT if rebooted else LOST_IN_RECONNECT))
        elif info.running:
            surviving.append(task_id)
        elif not exit_reported(task_id):
            # It ended while we were away and its report did not reach us.
            gone.append(task_id)
            events.append(
                TaskExited(
                    task_id,
                    info.exit_code if info.exit_code is not None else -1,
                    EXITED_WHILE_AWAY,
                    info.stdout_end,
                    info.stderr_end,
                )
            )
    adopted = tuple(t.task_id for t in listed if t.running and t.task_id not in known)
    events.append(Reconciled(rebooted, tuple(surviving), tuple(lost), tuple(listed)))
    return Reconciliation(tuple(events), tuple(gone), adopted, tuple(surviving), tuple(lost))


@dataclass(frozen=True, slots=True)
class Rehandshake:
    """The device introduced itself again on the same connection (it rebooted, or restarted
    its link): the link was lost and came back up within one batch of events. The session
    stays connected and reconciles in place instead of dropping the connection."""

    reason: str


def with_rehandshakes(events: Sequence[wire.Event]) -> list[wire.Event | Rehandshake]:
    """`events` from one call into the link, with each `LinkLost` that a later `LinkUp` of the
    same batch follows replaced by a `Rehandshake`."""
    marked: list[wire.Event | Rehandshake] = list(events)
    up_later = False
    for index in range(len(marked) - 1, -1, -1):
        event = marked[index]
        if isinstance(event, wire.LinkUp):
            up_later = True
        elif isinstance(event, wire.LinkLost) and up_later:
            marked[index] = Rehandshake(event.reason)
    return marked
