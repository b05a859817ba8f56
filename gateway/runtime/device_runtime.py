"""One device's pods as device tasks: start, output to logs, exit, restart policy, stop, adopt.

The runtime owns the container records (gateway.runtime.model) and drives the device through the
`DeviceTasks` operations. It reports every change through `on_change(pod uid)` so the Kubernetes
side can write status, and `on_finished(pod uid)` once a deleted pod has no task left.

Output is written to the container's CRI log (or, while its pod is not known, to the spool) and
acknowledged to the device only once it is on disk (gateway.runtime.output), so a gateway crash
loses nothing the device still holds.

Beside it, one part each: gateway.runtime.restarts (when a container is started again: restart
and image pull back-off), gateway.runtime.instance_marks (the on-disk record that a task id is
used), gateway.runtime.stops (STOP until the device confirms), gateway.runtime.resume (where a
container stands after a gateway restart) and gateway.runtime.start_request (a start the device
can never take).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from firmware_protocol import MessageTooLargeError
from gateway.errors import DeviceRejected, LinkDown, LinkTimeout, SessionClosed, WireletError
from gateway.link.events import (
    ANY_APP,
    Reconciled,
    SessionEvent,
    TaskExited,
    TaskInfo,
    TaskLost,
    TaskOutput,
    TaskStarted,
)
from gateway.logs.store import LogStore
from gateway.runtime.backoff import BackoffPolicy, RestartBackoff
from gateway.runtime.instance_logs import InstanceLogs
from gateway.runtime.instance_marks import InstanceMarks
from gateway.runtime.model import (
    ContainerPhase,
    ContainerState,
    ContainerStatus,
    PodSnapshot,
    PodSpecView,
)
from gateway.runtime.output import OutputSpooler
from gateway.runtime.records import (
    LOST_EXIT_CODE,
    START_ERROR_EXIT_CODE,
    DeviceTasks,
    EventSink,
    PodRecord,
    recordable_exit_code,
)
from gateway.runtime.restarts import ContainerRestarts
from gateway.runtime.resume import resume_prior, running_task
from gateway.runtime.start_request import slots_problem, start_request_problem
from gateway.runtime.stops import TaskStops
from gateway.runtime.task_ids import TaskName, parse_task_id
from gateway.tasks import TaskSet

log = logging.getLogger(__name__)

# Device answers to START that say it can never run as asked: retrying cannot help.
PERMANENT_START_ERRORS = frozenset({"MALFORMED", "TOO_LARGE"})


class DeviceRuntime:
    def __init__(
        self,
        device: DeviceTasks,
        logs: LogStore,
        *,
        apps: Sequence[str],
        backoff: BackoffPolicy,
        on_change: Callable[[str], None],
        on_finished: Callable[[str], None],
        on_event: EventSink,
        label: str = "",
        spooler: OutputSpooler | None = None,
        max_frame: int | None = None,
        task_slots: int | None = None,
    ) -> None:
        self.device = device
        self.logs = logs
        self.apps = tuple(apps)
        self.backoff = backoff
        self.on_change = on_change
        self.on_finished = on_finished
        self.on_event = on_event
        self.label = label
        self.max_frame = max_frame  # the largest frame the device receives (its HELLO)
        self.task_slots = task_slots  # tasks the device runs at once (its HELLO); None: no limit
        self._pods: dict[str, PodRecord] = {}
        # Output of our tasks whose pod is not known yet goes to the spool (gateway.runtime.output).
        self.spooler = spooler or OutputSpooler(logs.spool, device, label=label)
        self.instances = InstanceLogs(logs, device, self.spooler, self._pods, on_event, label=label)
        self._up = asyncio.Event()
        self._tasks = TaskSet(label)
        self.stops = TaskStops(
            device, self._up, self._tasks.spawn, already_gone=self._already_gone, label=label
        )
        self._device_tasks: dict[str, TaskInfo] | None = None  # from the last task list
        # Task ids whose START failed with the link: the device may have got it (the link
        # resends it on resume). Its reports, or else the next task list, say how it went.
        self._unconfirmed: set[str] = set()
        self._loop = asyncio.get_running_loop()
        self.marks = InstanceMarks(logs, label=label)
        self.restarts = ContainerRestarts(
            self._pods, backoff, start=self._start, on_change=on_change, on_event=on_event
        )

    @property
    def link_up(self) -> bool:
        return self._up.is_set()

    # --- what others may read -----------------------------------------------------------------

    @property
    def unconfirmed(self) -> frozenset[str]:
        """Task ids whose START got no answer before the link went down (see `reconciled`)."""
        return frozenset(self._unconfirmed)

    def snapshot(self, uid: str) -> PodSnapshot | None:
        record = self._pods.get(uid)
        return None if record is None else record.snapshot()

    def snapshots(self) -> list[PodSnapshot]:
        return [record.snapshot() for record in self._pods.values()]

    # --- helpers ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self._tasks.spawn(coro, name)

    async def close(self) -> None:
        for record in self._pods.values():
            for timer in record.restart_timers.values():
                timer.cancel()
        await self._tasks.stop()
        await self.instances.close()
        await self.spooler.close()

    def _event(self, uid: str, container: str | None, kind: str, reason: str, msg: str) -> None:
        self.on_event(uid, container, kind, reason, msg)

    # --- pods from the Kubernetes side --------------------------------------------------------

    def sync_pod(self, spec: PodSpecView) -> None:
        """A pod bound to this device appeared or changed: make sure its containers run."""
        record = self._pods.get(spec.uid)
        if record is None:
            record = PodRecord(
                spec=spec,
                containers=[],
                backoffs=[],
                started_at=spec.start_time or datetime.now(UTC),
                grace_s=spec.grace_period_s,
            )
            self._pods[spec.uid] = record
            self._add_containers(record, spec)
            self.instances.replay_spooled(spec.uid)
        elif len(spec.containers) > len(record.containers):
            # Ephemeral containers added (`kubectl debug`): they are appended, never changed or
            # removed, so the existing indexes (and task ids) stay as they are.
            self._add_containers(record, spec)
        else:
            record.spec = spec
        self.on_change(spec.uid)

    def _add_containers(self, record: PodRecord, spec: PodSpecView) -> None:
        first = len(record.containers)
        record.spec = spec
        for task_spec in spec.containers[first:]:
            record.containers.append(
                ContainerStatus(task_spec.container, task_spec.image, ephemeral=task_spec.ephemeral)
            )
            record.backoffs.append(RestartBackoff(self.backoff))
        if record.deleting or record.failure:
            return
        for index in range(first, len(spec.containers)):
            used = self.marks.used_check(record, index)
            if resume_prior(record, index, self._device_tasks or {}, used):
                continue
            self._adopt_or_start(record, index)

    def _adopt_or_start(self, record: PodRecord, index: int) -> None:
        running = running_task(self._device_tasks or {}, record.spec.uid, index)
        if running is not None:
            self._adopt(record, index, *running)
        else:
            self._start(record, index)

    def _adopt(self, record: PodRecord, index: int, name: TaskName, info: TaskInfo) -> None:
        """A task that kept running while the gateway was away: carry on, do not start again."""
        status = record.containers[index]
        status.restart_count = name.restart
        status.task_id = str(name)
        now = datetime.now(UTC)
        status.state = ContainerState(ContainerPhase.RUNNING, started_at=now)
        status.ready = True
        record.backoffs[index].started(self._loop.time())
        # The device re-sends what no gateway acknowledged; what the log already holds (flushed
        # just before a crash, unacknowledged) is known by offset and not written twice.
        self.instances.open(record, name).resume()
        log.info("%s: adopted running task %s", self.label, name)

    def _start(self, record: PodRecord, index: int) -> None:
        status = record.containers[index]
        task_spec = record.spec.containers[index]
        if record.failure is not None:
            status.state = ContainerState.waiting(
                "ContainerCreating", f"not started: {record.failure[1]}"
            )
            return
        if not self._offers(task_spec.app):
            self.restarts.app_missing(record, index, self.apps)
            return
        record.pull_backoffs.pop(index, None)
        # The kubelet's event for an image already on the machine: the app is on the device.
        self._event(
            record.spec.uid,
            status.name,
            "Normal",
            "Pulled",
            f'Container image "{task_spec.image}" already present on machine '
            f'(the device offers app "{task_spec.app}")',
        )
        if not self.link_up:
            status.state = ContainerState.waiting(
                "ContainerCreating", "waiting for the device to connect"
            )
            return
        name = TaskName(record.spec.uid, index, status.restart_count)
        # A command backend (an SSH host, ANY_APP) takes no START frame: no frame limits apply.
        problem = (
            None
            if ANY_APP in self.apps
            else slots_problem(record.spec, self.task_slots)
            or start_request_problem(
                str(name), task_spec.app, task_spec.argv, task_spec.env, self.max_frame
            )
        )
        if problem is not None:
            # The protocol says: refuse locally, never send (the device would drop the frame).
            self._cannot_run(record, index, problem)
            return
        status.state = ContainerState.waiting("ContainerCreating")
        status.task_id = str(name)
        self.marks.mark(record, name)
        self.instances.open(record, name)
        self._spawn(self._start_on_device(record, index, name), f"start {name}")

    def _offers(self, app: str) -> bool:
        return app in self.apps or ANY_APP in self.apps

    def device_changed(
        self, apps: Sequence[str], max_frame: int | None, task_slots: int | None = None
    ) -> None:
        """The device's facts after a handshake (new firmware may offer other apps, take
        other frames or run another number of tasks): containers waiting for an app it offers
        now start without waiting out their back-off."""
        self.apps = tuple(apps)
        self.max_frame = max_frame
        self.task_slots = task_slots
        self.restarts.apps_changed(self._offers)

    async def _settle_unanswered(self, task_id: str) -> None:
        """Ask the device's task list until it settles an unanswered START (see `reconciled`),
        backing off; a link that drops meanwhile settles it with the next handshake's list."""
        delay = 0.5
        while task_id in self._unconfirmed and self.link_up:
            try:
                tasks = await self.device.list_tasks()
            except WireletError as exc:
                log.warning("%s: task list for the start of %s: %s", self.label, task_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if task_id in self._unconfirmed:
                self.reconciled(tasks)
            return

    async def _start_on_device(self, record: PodRecord, index: int, name: TaskName) -> None:
        spec = record.spec.containers[index]
        status = record.containers[index]
        try:
            await self.device.start_task(
                str(name), spec.app, spec.argv, spec.env, working_dir=spec.working_dir
            )
        except WireletError as exc:
            if isinstance(exc, LinkDown) and not isinstance(exc, SessionClosed):
                # Not refused, maybe delivered: starting it again could run it twice.
                self._unconfirmed.add(str(name))
                status.state = ContainerState.waiting(
                    "ContainerCreating",
                    f"start not confirmed ({exc}); the device's task list will tell",
                )
                self.on_change(record.spec.uid)
                return
            if isinstance(exc, LinkTimeout):
                # Unanswered: the device may have run it (and even finished it). Sending START
                # again with this id could run it twice; its task list says what happened.
                self._unconfirmed.add(str(name))
                status.state = ContainerState.waiting(
                    "ContainerCreating",
                    f"start not confirmed ({exc}); asking the device's task list",
                )
                self.on_change(record.spec.uid)
                self._spawn(self._settle_unanswered(str(name)), f"settle {name}")
                return
            await self.instances.drop(str(name))
            if isinstance(exc, DeviceRejected):
                self.marks.unmark(record, name)
            if status.task_id == str(name):
                status.task_id = None
            too_large = isinstance(exc.__cause__, MessageTooLargeError)
            if too_large or (
                isinstance(exc, DeviceRejected) and exc.code in PERMANENT_START_ERRORS
            ):
                self._cannot_run(record, index, str(exc))
                return
            status.state = ContainerState.waiting("RunContainerError", str(exc))
            self._event(record.spec.uid, status.name, "Warning", "Failed", str(exc))
            self.on_change(record.spec.uid)
            if not record.deleting and not record.failure and self.link_up:
                refused = isinstance(exc, DeviceRejected)  # nothing ran: the same instance
                self.restarts.schedule(record, index, start_error=str(exc), same_instance=refused)
            return
        # The kubelet's pair for a container that runs: the device creates and starts a task in
        # one step, so both events go out once it confirms.
        self._event(
            record.spec.uid, status.name, "Normal", "Created", f"Created container: {status.name}"
        )
        self._event(
            record.spec.uid,
            status.name,
            "Normal",
            "Started",
            f"Started container {status.name} (app {spec.app})",
        )

    def _cannot_run(self, record: PodRecord, index: int, problem: str) -> None:
        """A container the device can never run as specified: it ends as StartError (the
        kubelet's reason for a container that could not start) and, unless it is an ephemeral
        container, the pod fails: its other containers are stopped and nothing restarts."""
        status = record.containers[index]
        spec = record.spec
        message = f"container {status.name} cannot run on this device: {problem}"
        status.state = ContainerState(
            ContainerPhase.TERMINATED,
            reason="StartError",
            message=problem,
            exit_code=START_ERROR_EXIT_CODE,
            finished_at=datetime.now(UTC),
        )
        status.ready = False
        self._event(spec.uid, status.name, "Warning", "Failed", message)
        log.warning("%s: pod %s: %s", self.label, spec.key, message)
        if not spec.containers[index].ephemeral and record.failure is None:
            record.failure = ("StartError", message)
            self._stop_all(record)
        self.on_change(spec.uid)

    def fail_pod(self, uid: str, reason: str, message: str) -> bool:
        """End a pod that has not ended as Failed with `reason` (the kubelet's
        activeDeadlineSeconds): its tasks are stopped with its grace period and nothing starts
        or restarts again. False when there is nothing to end (unknown, deleting, already
        failed, or every container has terminated for good)."""
        record = self._pods.get(uid)
        if record is None or record.deleting or record.failure is not None:
            return False
        regular = [s for s in record.containers if not s.ephemeral]
        done = all(s.state.phase is ContainerPhase.TERMINATED and not s.task_id for s in regular)
        if done and not record.restart_timers:
            return False
        record.failure = (reason, message)
        log.info("%s: pod %s: %s", self.label, record.spec.key, message)
        self._stop_all(record)
        self.on_change(uid)
        return True

    def delete_pod(self, uid: str, grace_s: float) -> None:
        """Graceful delete: stop every task with the grace period; finish when all have exited."""
        record = self._pods.get(uid)
        if record is None:
            self.on_finished(uid)
            return
        if record.deleting:
            if grace_s < record.grace_s:  # a shorter grace (e.g. --now) re-sends the stop
                record.grace_s = grace_s
                self._stop_all(record)
            return
        record.deleting = True
        record.grace_s = grace_s
        self._stop_all(record)
        self._finish_if_done(record)

    def forget_pod(self, uid: str) -> None:
        """The pod object is gone (force delete): stop its tasks now and drop the record."""
        record = self._pods.get(uid)
        if record is None:
            return
        record.deleting = True
        record.grace_s = 0.0
        self._stop_all(record)
        for timer in record.restart_timers.values():
            timer.cancel()
        del self._pods[uid]
        self._forgotten(uid)

    def _forgotten(self, uid: str) -> None:
        """The pod's record is gone: close the logs its ended tasks' late output kept open."""
        if self.instances.has_late(uid):
            self._spawn(self.instances.finish_late(uid), f"close late logs of {uid}")

    def _stop_all(self, record: PodRecord) -> None:
        for timer in record.restart_timers.values():
            timer.cancel()
        record.restart_timers.clear()
        for status in record.containers:
            if status.task_id and status.task_id in self.instances:
                if status.task_id not in self.stops:
                    self._event(
                        record.spec.uid,
                        status.name,
                        "Normal",
                        "Killing",
                        f"Stopping container {status.name}",
                    )
                self.stops.request(status.task_id, record.grace_s)

    async def _already_gone(self, task_id: str) -> None:
        """The device has no such task: it ended and its exit report never reached us. Its
        final state comes from the device's task list where the device still remembers it."""
        if task_id not in self.instances:
            return  # its exit report arrived meanwhile (or an orphan: nothing to record)
        info = (self._device_tasks or {}).get(task_id)
        with contextlib.suppress(WireletError):
            listed = {t.task_id: t for t in await self.device.list_tasks()}
            info = listed.get(task_id, info)
        if task_id not in self.instances:
            return
        if info is not None and not info.running and info.exit_code is not None:
            await self._finished(task_id, info.exit_code, "exited", "", lost=False)
            return
        log.warning("%s: %s is gone from the device and its exit is unknown", self.label, task_id)
        await self._finished(
            task_id,
            LOST_EXIT_CODE,
            "ContainerStatusUnknown",
            "the device no longer knows this task and never reported how it ended",
            lost=True,
        )

    def _finish_if_done(self, record: PodRecord) -> None:
        # `task_id` is cleared only once a task's end is fully recorded (its instance goes
        # first): a pod with exits still being recorded is not done yet.
        if record.deleting and not any(s.task_id for s in record.containers):
            self.on_finished(record.spec.uid)  # first: the final status is read from the record
            if self._pods.pop(record.spec.uid, None) is not None:
                self._forgotten(record.spec.uid)

    # --- device events ------------------------------------------------------------------------

    def handle(self, event: SessionEvent) -> None:
        if isinstance(event, TaskOutput):
            self.instances.take(event)
        elif isinstance(event, TaskStarted):
            self._started(event.task_id)
        elif isinstance(event, TaskExited):
            self._spawn(
                self._finished(event.task_id, event.exit_code, event.reason, "", lost=False),
                f"exit {event.task_id}",
            )
        elif isinstance(event, TaskLost):
            self._spawn(
                self._finished(event.task_id, LOST_EXIT_CODE, "Lost", event.reason, lost=True),
                f"lost {event.task_id}",
            )
        elif isinstance(event, Reconciled):
            self.reconciled(event.device_tasks)

    def reconciled(self, device_tasks: Sequence[TaskInfo]) -> None:
        """The device's task list after a handshake: what may be adopted, what is orphaned. It
        also settles the starts left unconfirmed: the list was asked for after their START, so
        it shows whether the device took it."""
        self._device_tasks = {t.task_id: t for t in device_tasks}
        unconfirmed, self._unconfirmed = self._unconfirmed, set()
        for task_id in unconfirmed:
            found = self._locate(task_id)
            if found is None:
                continue
            record, index = found
            info = self._device_tasks.get(task_id)
            if info is None:
                self._spawn(self._start_again(record, index, task_id), f"start again {task_id}")
            elif info.running:
                self._started(task_id)  # adopted: its start report did not reach us
            else:
                code = info.exit_code if info.exit_code is not None else LOST_EXIT_CODE
                self._spawn(
                    self._finished(task_id, code, "exited while disconnected", "", lost=False),
                    f"exit {task_id}",
                )

    def lose_unlisted(self) -> None:
        """The device is back after another device answered on its path (the session took
        that for a reboot and forgot this device's tasks): containers whose task the device's
        task list no longer has are lost, as after a reboot."""
        listed = self._device_tasks or {}
        for record in list(self._pods.values()):
            for status in record.containers:
                task_id = status.task_id
                if task_id is None or task_id in listed or task_id in self._unconfirmed:
                    continue
                self._spawn(
                    self._finished(
                        task_id,
                        LOST_EXIT_CODE,
                        "Lost",
                        "the device's task list no longer has it (it was away)",
                        lost=True,
                    ),
                    f"lost {task_id}",
                )

    async def _start_again(self, record: PodRecord, index: int, task_id: str) -> None:
        """The device never got this START: start the container anew (once the link is up)."""
        await self.instances.drop(task_id)
        status = record.containers[index]
        if status.task_id != task_id:
            return
        status.task_id = None
        status.state = ContainerState.waiting("ContainerCreating", "the device never got the start")
        if record.deleting:
            self._finish_if_done(record)
        elif self.link_up and record.failure is None:
            self._start(record, index)  # else `link_changed` starts it
        self.on_change(record.spec.uid)

    def _locate(self, task_id: str) -> tuple[PodRecord, int] | None:
        name = parse_task_id(task_id)
        if name is None:
            return None
        record = self._pods.get(name.pod_uid)
        if record is None or name.container_index >= len(record.containers):
            return None
        if record.containers[name.container_index].task_id != task_id:
            return None
        return record, name.container_index

    def _started(self, task_id: str) -> None:
        self._unconfirmed.discard(task_id)
        found = self._locate(task_id)
        if found is None:
            return
        record, index = found
        status = record.containers[index]
        status.state = ContainerState(ContainerPhase.RUNNING, started_at=datetime.now(UTC))
        status.ready = True
        record.backoffs[index].started(self._loop.time())
        self.on_change(record.spec.uid)

    def pod_uids_in_use(self) -> set[str]:
        """Pods whose logs this runtime may still write: their directories must stay."""
        return set(self._pods) | self.instances.pod_uids()

    def uses_pod(self, uid: str) -> bool:
        """Whether this runtime may still write the pod's logs (`pod_uids_in_use` for one)."""
        return uid in self._pods or self.instances.writes_pod(uid)

    async def _finished(
        self, task_id: str, exit_code: int, reason: str, message: str, *, lost: bool
    ) -> None:
        self._unconfirmed.discard(task_id)
        self.stops.confirmed(task_id)  # the device reported it gone: no more STOPs
        # Once per task: an exit report and a NO_SUCH_TASK answer may both say it ended.
        found = self._locate(task_id) if task_id in self.instances else None
        await self.instances.drop(task_id)
        if found is None:
            return
        record, index = found
        status = record.containers[index]
        previous = status.state
        now = datetime.now(UTC)
        if not lost:
            # Kubernetes reasons are fixed words; the device's own words go in the message.
            if reason and reason not in ("exited", "stopped"):
                message = reason
            reason = "Completed" if exit_code == 0 else "Error"
        exit_code, beyond = recordable_exit_code(exit_code)
        if beyond:
            log.warning("%s: %s: %s; recorded as %d", self.label, task_id, beyond, exit_code)
            message = f"{message}; {beyond}" if message else beyond
        status.state = ContainerState(
            ContainerPhase.TERMINATED,
            reason=reason,
            message=message,
            exit_code=exit_code,
            started_at=previous.started_at or now,
            finished_at=now,
            task_id=task_id,
        )
        status.ready = False
        status.task_id = None
        if lost:
            self._event(record.spec.uid, status.name, "Warning", "TaskLost", message)
        if record.deleting:
            self.on_change(record.spec.uid)
            self._finish_if_done(record)
            return
        if record.policy(index).restarts_after(exit_code) and record.failure is None:
            self.restarts.schedule(record, index)
        self.on_change(record.spec.uid)

    # --- the link -----------------------------------------------------------------------------

    def link_changed(self, up: bool) -> None:
        """Link up: start what waits for the device. Link down: readiness follows the node."""
        if up:
            self._up.set()
        else:
            self._up.clear()
        for record in list(self._pods.values()):
            for index, status in enumerate(record.containers):
                if not up:
                    status.ready = False
                elif status.running:
                    status.ready = True
                elif (
                    status.state.phase is ContainerPhase.WAITING
                    and status.task_id is None
                    and index not in record.restart_timers
                    and status.state.reason == "ContainerCreating"
                    and not record.deleting
                    and record.failure is None
                ):
                    self._start(record, index)
            if record.deleting and up:
                self._stop_all(record)
            self.on_change(record.spec.uid)

    def orphan_tasks(self, known_uids: set[str]) -> list[str]:
        """Running device tasks made by a gateway for pods that no longer exist."""
        orphans = []
        for task_id, info in (self._device_tasks or {}).items():
            name = parse_task_id(task_id)
            if name and info.running and name.pod_uid not in known_uids:
                orphans.append(task_id)
        return orphans

    def stop_orphans(self, known_uids: set[str]) -> list[str]:
        # Output spooled for pods that are gone is removed with their logs (LogJanitor).
        orphans = self.orphan_tasks(known_uids)
        for task_id in orphans:
            log.info("%s: stopping task %s: its pod no longer exists", self.label, task_id)
            self.stops.request(task_id, 0.0)
        return orphans
