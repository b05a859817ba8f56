"""The log files of one device's container instances: opened when a task is started or
adopted, fed the device's output, finished when the task ends.

Output of a task that already ended (the device re-sends what no gateway acknowledged) goes to
that instance's log too (a "late" log); output of our tasks whose pod is not known yet goes to
the spool and moves into the log once the pod appears (gateway.runtime.output).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gateway.link.events import TaskOutput
from gateway.logs.store import LogStore
from gateway.runtime.output import AcksOutput, InstanceLog, OutputSpooler
from gateway.runtime.records import EventSink, PodRecord
from gateway.runtime.task_ids import TaskName, parse_task_id

log = logging.getLogger(__name__)


class InstanceLogs:
    def __init__(
        self,
        logs: LogStore,
        device: AcksOutput,
        spooler: OutputSpooler,
        records: Mapping[str, PodRecord],
        on_event: EventSink,
        *,
        label: str = "",
    ) -> None:
        self.logs = logs
        self.device = device
        self.spooler = spooler
        self.records = records  # the runtime's pods by uid (read only)
        self.on_event = on_event
        self.label = label
        self.running: dict[str, InstanceLog] = {}  # task id -> log, until its end is recorded
        self.late: dict[str, InstanceLog] = {}  # logs for output of already-finished tasks
        # Pod uid -> how many of `running` are its: the log janitor asks, per deleted pod,
        # every device's runtime whether it still writes the pod (a scan of each was O(tasks)).
        self._running_per_pod: dict[str, int] = {}

    def __contains__(self, task_id: str) -> bool:
        return task_id in self.running

    def open(self, record: PodRecord, name: TaskName) -> InstanceLog:
        instance = self._make(record, name)
        previous = self.running.get(str(name))
        self.running[str(name)] = instance
        if previous is None:
            uid = name.pod_uid
            self._running_per_pod[uid] = self._running_per_pod.get(uid, 0) + 1
        return instance

    async def drop(self, task_id: str) -> None:
        """The task ended: its log is finished (what it holds is flushed and acknowledged)."""
        instance = self.running.pop(task_id, None)
        if instance is not None:
            uid = instance.name.pod_uid
            left = self._running_per_pod.get(uid, 0) - 1
            if left > 0:
                self._running_per_pod[uid] = left
            else:
                self._running_per_pod.pop(uid, None)
            await instance.finish()

    def has_late(self, uid: str) -> bool:
        return any(instance.name.pod_uid == uid for instance in self.late.values())

    async def finish_late(self, uid: str) -> None:
        """The pod left the runtime: its late logs are finished (flushed, acknowledged, closed).
        Output that still comes for it opens the log again while the pod is known."""
        for task_id in [t for t, instance in self.late.items() if instance.name.pod_uid == uid]:
            await self.late.pop(task_id).finish()

    async def close(self) -> None:
        for instance in [*self.running.values(), *self.late.values()]:
            await instance.finish()
        self.running.clear()
        self._running_per_pod.clear()
        self.late.clear()

    def pod_uids(self) -> set[str]:
        return set(self._running_per_pod)

    def writes_pod(self, uid: str) -> bool:
        return uid in self._running_per_pod

    def take(self, event: TaskOutput) -> None:
        """Device output: into its instance's log, else the spool, else acknowledged away."""
        instance = self.running.get(event.task_id) or self.late.get(event.task_id)
        if instance is None:
            instance = self._late_log(event.task_id)
        if instance is not None:
            instance.take(event.stream, event.offset, event.data)
        elif not self.spooler.take(event.task_id, event.stream, event.offset, event.data):
            # Not made by a gateway: nobody will store it. Acknowledge so the device can free it.
            self.device.ack_output(event.task_id, event.stream, event.end)

    def replay_spooled(self, uid: str) -> None:
        """The pod is known now: output spooled for its tasks moves into their logs."""
        spool = self.spooler.spool
        for task_id in spool.task_ids(uid):
            instance = self.running.get(task_id) or self.late.get(task_id)
            if instance is None:
                instance = self._late_log(task_id)
            if instance is None:
                log.warning("%s: spooled output of %s has no container", self.label, task_id)
                spool.discard(uid, task_id)
                continue
            instance.take_spooled(uid, task_id)

    def _late_log(self, task_id: str) -> InstanceLog | None:
        """Output of a task that ended while no gateway listened, re-sent by the device: it
        still belongs in that instance's log file."""
        name = parse_task_id(task_id)
        record = self.records.get(name.pod_uid) if name else None
        if name is None or record is None or name.container_index >= len(record.containers):
            return None
        instance = self._make(record, name)
        instance.resume()
        self.late[task_id] = instance
        return instance

    def _make(self, record: PodRecord, name: TaskName) -> InstanceLog:
        spec = record.spec
        container = spec.containers[name.container_index].container
        writer = self.logs.open_writer(spec.namespace, spec.name, spec.uid, container, name.restart)
        return InstanceLog(
            name, writer, self.device, self.spooler, on_failure=self._failed, label=self.label
        )

    def _failed(self, instance: InstanceLog, error: OSError) -> None:
        """A log that cannot be written must not stall the device: its output is spooled."""
        name = instance.name
        record = self.records.get(name.pod_uid)
        container = record.container_name(name.container_index) if record else None
        message = (
            f"cannot write the log of container {container or name.container_index} "
            f"({instance.writer.path}): {error}; its output is kept in "
            f"{self.spooler.spool.directory} until the pod is deleted"
        )
        log.error("%s: %s", self.label, message)
        self.on_event(name.pod_uid, container, "Warning", "LogWriteFailed", message)
