"""The on-disk record that a task id is used: the instance's (empty) log file, created before
START goes out and removed again when the device refuses the start. A gateway that dies in
between leaves it, so its successor never starts the same task id a second time (it takes the
instance as lost instead: gateway.runtime.resume).
"""

from __future__ import annotations

import contextlib
import logging

from gateway.logs.store import LogStore
from gateway.runtime.model import ContainerPhase, ContainerState
from gateway.runtime.records import PodRecord
from gateway.runtime.resume import InstanceUsed
from gateway.runtime.task_ids import TaskName

log = logging.getLogger(__name__)


class InstanceMarks:
    def __init__(self, logs: LogStore, *, label: str = "") -> None:
        self.logs = logs
        self.label = label

    def used_check(self, record: PodRecord, index: int) -> InstanceUsed:
        """Whether the instance about to be started as `restart` was started before, though
        its status (none, or waiting before its first run) does not say so: its log exists
        (`mark` creates it before START is sent)."""
        spec = record.spec
        container = spec.containers[index].container

        def used(restart: int, state: ContainerState | None) -> bool:
            if state is not None and (state.phase is not ContainerPhase.WAITING or restart != 0):
                return False
            try:
                return self.logs.instance_used(
                    spec.namespace, spec.name, spec.uid, container, restart
                )
            except OSError as exc:
                log.warning("%s: cannot tell whether %s ran: %s", self.label, container, exc)
                return False

        return used

    def mark(self, record: PodRecord, name: TaskName) -> None:
        """Record on disk, before START goes out, that this task id is used: a gateway that
        dies now must not let its successor reuse it."""
        spec = record.spec
        container = spec.containers[name.container_index].container
        try:
            self.logs.mark_instance(spec.namespace, spec.name, spec.uid, container, name.restart)
        except OSError as exc:
            # The log writer reports the same trouble as its output arrives (LogWriteFailed).
            log.warning("%s: cannot create the log of %s: %s", self.label, name, exc)

    def unmark(self, record: PodRecord, name: TaskName) -> None:
        """The device refused the START: the task id is free after all (see `mark`)."""
        spec = record.spec
        container = spec.containers[name.container_index].container
        with contextlib.suppress(OSError):
            self.logs.unmark_instance(spec.namespace, spec.name, spec.uid, container, name.restart)
