"""One emulated device: firmware behaviour on top of the device end of a `firmware_protocol.Link`.

Cost per device is kept small so a thousand fit in one process: one pty reader, a writer only while
the pty is full, and one timer handle armed for the earliest of the link's deadline, the apps'
wake-ups, pacing and delayed frames. No asyncio task per device or per app.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_protocol import (
    DeviceLog,
    Error,
    ErrorCode,
    Exec,
    ExecOutput,
    ExecResult,
    Hello,
    Link,
    LinkConfig,
    ListTasks,
    Load,
    Message,
    MessageReceived,
    MessageTooLargeError,
    OutputStream,
    PeerReset,
    QueueFullError,
    Role,
    StartTask,
    StopTask,
    TaskExited,
    TaskInfo,
    TaskList,
    TaskLoad,
    TaskOutput,
    TaskStarted,
    fit_device_log,
    fit_error,
    fit_exec_result,
    max_exec_output_data,
    max_output_data,
    max_task_data,
    task_list_page,
)
from firmware_protocol.events import Event
from firmware_protocol.wakeup import Wakeup
from hil.emulator.apps import APPS, STDERR, AppRun
from hil.emulator.faults import FaultSettings, FaultyLine, Misbehaviour
from hil.emulator.profile import DeviceProfile
from hil.emulator.pty_port import PtyPort
from hil.emulator.shell import CommandResult, run_command

_log = logging.getLogger(__name__)

# Exit code of a task killed after its stop grace period (128 + SIGKILL).
KILLED_EXIT_CODE = 137
# Output messages allowed to wait in the link's queue per device: enough to keep the window full,
# few enough that most unsent output stays in the (bounded, per-task) retained buffers.
MAX_QUEUED_OUTPUT = 8
# Messages kept in `EmulatedDevice.received` for tests to inspect.
MAX_RECEIVED_KEPT = 1000


def _new_boot_id(rng: random.Random) -> int:
    return rng.randrange(1, 1 << 32)


@dataclass(slots=True)
class _Stream:
    """One output stream of a task: bytes produced but not yet handed to the link."""

    pending: bytearray = field(default_factory=bytearray)
    end: int = 0  # total bytes the app produced (the stream offset of the next byte)

    @property
    def sent(self) -> int:
        return self.end - len(self.pending)


@dataclass(slots=True)
class _Task:
    task_id: str
    app: str
    run: AppRun
    streams: dict[int, _Stream]
    exit_code: int | None = None
    reason: str = ""
    exit_reported: bool = False
    stop_request: int = 0  # STOP_TASK request id to answer with the exit report
    kill_at: float | None = None
    # Place in the task table for LIST_TASKS paging: grows with every task created this boot,
    # so a cursor stays valid while tasks are forgotten and new ones are appended.
    position: int = 0

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def buffered(self) -> int:
        return sum(len(s.pending) for s in self.streams.values())


@dataclass(slots=True)
class _ExecJob:
    """One EXEC in progress: answered once `ready_at` has passed (or ERROR TIMEOUT at
    `timeout_at`); a streamed one sends its output as EXEC_OUTPUT first."""

    request: Exec
    result: CommandResult
    ready_at: float
    timeout_at: float | None
    streams: dict[int, _Stream] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    boot_id: int
    boot_count: int
    plugged: bool
    hung: bool
    tty: str
    bytes_in: int
    bytes_out: int
    frames_sent: int
    frames_received: int
    retransmits: int
    crc_errors: int
    dropped_frames: int
    duplicated_frames: int
    corrupted_bytes: int
    tasks: int
    #: Sequenced frames the gateway has not acknowledged (in flight or queued).
    unacked_frames: int = 0


class EmulatedDevice:
    """A device with a profile, served on a pty. Create with `await EmulatedDevice.start(...)`."""

    def __init__(
        self,
        profile: DeviceProfile,
        *,
        link_config: LinkConfig | None = None,
        faults: FaultSettings | None = None,
        on_tty_change: Callable[[EmulatedDevice], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.profile = profile
        self.device_id = profile.device_id
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random(seed)
        base = link_config or LinkConfig()
        line_rate = base.line_rate
        if not line_rate and profile.baud and profile.line_aware_timers:
            line_rate = profile.baud / 10  # 8N1: ten bit times per byte
        self._link_config = dataclasses.replace(
            base,
            max_frame=profile.max_frame,
            window=min(profile.rx_window, 64),
            versions=profile.protocol_versions or base.versions,
            features=base.features
            if profile.protocol_features is None
            else profile.protocol_features,
            line_rate=line_rate,
        )
        self._on_tty_change = on_tty_change
        self._log = logging.LoggerAdapter(_log, {"device": self.device_id})
        self.port = PtyPort(self._on_line_bytes, self._reschedule, baud=profile.baud)
        # Both directions of the cable can misbehave: gateway->device bytes pass `_rx_line`
        # before the link sees them; device->gateway bytes pass `_tx_line` before the pty.
        self._rx_line = FaultyLine(self._feed_link, self._rng)
        self._tx_line = FaultyLine(self.port.write, self._rng)
        self.set_faults(faults or FaultSettings())
        self.received: collections.deque[Message] = collections.deque(maxlen=MAX_RECEIVED_KEPT)
        self.events: collections.deque[Event] = collections.deque(maxlen=MAX_RECEIVED_KEPT)
        # Real task starts per task id (an idempotent re-START is not one): a soak checks that
        # no task is ever started twice.
        self.starts: collections.Counter[str] = collections.Counter()
        self.boot_count = 0
        self.boot_id = 0
        self.hung = False
        # Fault injection for the firmware itself: this many STOP_TASK requests are taken (the
        # link acknowledges them) and never acted on or answered, as by a firmware bug.
        self.ignore_stops = 0
        self._tasks: dict[str, _Task] = {}
        self._finished: collections.deque[str] = collections.deque()
        self._next_position = 0
        self._wakeup = Wakeup(self._loop, self._service)
        self.misbehaviour = Misbehaviour()
        self.firmware_memory = 0  # bytes in use beside the tasks (set_firmware_memory)
        self._foreign_sent = 0
        self._exec_jobs: collections.deque[_ExecJob] = collections.deque()
        self._link = self._boot()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    def plug(self) -> str:
        """Connect the cable: open a new pty. Returns the tty path the gateway should open."""
        previous = self.port.slave_path
        self.port.open(avoid_name=previous)
        self._log.debug("%s: plugged at %s", self.device_id, self.port.slave_path)
        if self._on_tty_change:
            self._on_tty_change(self)
        self._service()
        return self.port.slave_path

    def unplug(self) -> None:
        """Pull the cable: the tty vanishes (the gateway's fd sees hangup/EIO)."""
        if not self.port.is_open:
            return
        self.port.close()
        self._rx_line.reset()
        self._tx_line.reset()
        self._log.debug("%s: unplugged", self.device_id)
        if self._on_tty_change:
            self._on_tty_change(self)

    def replug(self) -> str:
        """Pull and reconnect: same device (no reboot), new tty name."""
        self.unplug()
        return self.plug()

    def reboot(self) -> None:
        """Reset: new boot id, all tasks gone, the link starts from scratch."""
        self._reset()
        self._service()

    def _reset(self) -> None:
        self._log.debug("%s: rebooting", self.device_id)
        self._tasks.clear()
        self._finished.clear()
        self._exec_jobs.clear()
        self._next_position = 0
        self.hung = False
        self.port.flush_input()
        self._link = self._boot()

    def hang(self) -> None:
        """Firmware stuck: bytes from the gateway are swallowed, nothing is sent, no timer runs."""
        self.hung = True
        self._wakeup.cancel()

    def resume(self) -> None:
        self.hung = False
        self._service()

    def set_firmware_memory(self, used: int) -> None:
        """Memory the firmware itself uses (heap, buffers), reported beside the tasks' 4 KiB
        each in heartbeat answers from now on."""
        self.firmware_memory = used
        self._update_load()

    def stop_reading(self) -> None:
        """Firmware that no longer reads its UART: the gateway's bytes pile up in the tty until
        its writes block (with `hang`, the device sends nothing of its own either)."""
        self.port.stop_reading()

    def set_faults(self, faults: FaultSettings) -> None:
        self._rx_line.settings = faults
        self._tx_line.settings = faults

    def set_misbehaviour(self, misbehaviour: Misbehaviour) -> None:
        """Switch firmware misbehaviour on or off (takes effect at once)."""
        self.misbehaviour = misbehaviour
        self._service()

    @property
    def faults(self) -> FaultSettings:
        return self._tx_line.settings

    def close(self) -> None:
        self._closed = True
        self._wakeup.cancel()
        self.port.close()

    @property
    def tty(self) -> str:
        return self.port.slave_path if self.port.is_open else ""

    @property
    def link(self) -> Link:
        return self._link

    def inject_raw(self, data: bytes) -> None:
        """Put arbitrary bytes on the line towards the gateway (garbage, hand-made frames)."""
        self.port.write(data)

    def task_ids(self) -> list[str]:
        return list(self._tasks)

    def running_task_ids(self) -> list[str]:
        return [t.task_id for t in self._tasks.values() if t.running]

    def lose_task(self, task_id: str) -> None:
        """Fault injection: the firmware forgets a task without a word (no exit report); a
        later STOP for it is answered NO_SUCH_TASK."""
        self._tasks.pop(task_id, None)
        with contextlib.suppress(ValueError):
            self._finished.remove(task_id)
        self._update_load()

    def end_task(self, task_id: str, exit_code: int, reason: str = "exited") -> None:
        """Fault injection: the firmware ends a running task with any int64 exit code (the
        apps' own codes are 0..255), e.g. an absurd one; its exit report follows its output."""
        task = self._tasks[task_id]
        if task.running:
            self._finish(task, exit_code, reason)
            self._service()

    def figures(self) -> DeviceFigures:
        stats = self._link.stats
        return DeviceFigures(
            boot_id=self.boot_id,
            boot_count=self.boot_count,
            plugged=self.port.is_open,
            hung=self.hung,
            tty=self.tty,
            bytes_in=self.port.bytes_in,
            bytes_out=self.port.bytes_out,
            frames_sent=stats.frames_sent,
            frames_received=stats.frames_received,
            retransmits=stats.retransmits,
            crc_errors=stats.crc_errors,
            dropped_frames=self._rx_line.dropped + self._tx_line.dropped,
            duplicated_frames=self._rx_line.duplicated + self._tx_line.duplicated,
            corrupted_bytes=self._rx_line.corrupted_bytes + self._tx_line.corrupted_bytes,
            tasks=len(self._tasks),
            unacked_frames=self._link.unacked + self._link.queued,
        )

    # --- boot and link -----------------------------------------------------------------------

    def _boot(self) -> Link:
        self._booted_at = self._loop.time()
        self.boot_count += 1
        self.boot_id = _new_boot_id(self._rng)
        p = self.profile
        hello = Hello(
            versions=self._link_config.versions,
            device_id=p.device_id,
            boot_id=self.boot_id,
            firmware_name=p.firmware_name,
            firmware_version=p.firmware_version,
            apps=p.apps,
            task_slots=p.task_slots,
            memory_total=p.memory_bytes,
            max_frame=self._link_config.max_frame,
            window=self._link_config.window,
            arch=p.arch,
            vendor=p.vendor,
            product=p.product,
            serial=p.serial,
            features=self._link_config.features,
        )
        link = Link(Role.DEVICE, self._link_config, hello=hello)
        self._handle_events(link.start(self._loop.time()))
        return link

    def _output_capacity(self, task_id: str, offset: int) -> int:
        """Largest TASK_OUTPUT data for `task_id` at stream position `offset` that fits the
        frames we send: the gateway's largest, and no larger than our own (a device's buffers
        are as large as it declares). With task handles the output travels as TASK_DATA, one
        byte for the task instead of its id (the link splits the binding frame if need be):
        full frames are what make goodput approach the line rate."""
        frame = min(self._link.send_limit, self._link_config.max_frame)
        if self._link.task_handles:
            return max_task_data(frame, offset=offset)
        return max_output_data(frame, len(task_id.encode()), offset=offset)

    def _on_line_bytes(self, data: bytes) -> None:
        if self.hung or self._closed:
            return  # a stuck firmware: the UART FIFO overflows silently
        self._rx_line.feed(data, self._loop.time())
        self._service()

    def _feed_link(self, data: bytes) -> None:
        self._handle_events(self._link.receive_data(data, self._loop.time()))

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            self.events.append(event)
            if isinstance(event, MessageReceived):
                self.received.append(event.message)
                self._on_message(event.message)
            elif isinstance(event, PeerReset):
                self._log.debug("%s: new gateway session %08x", self.device_id, event.new_id)

    # --- the single timer --------------------------------------------------------------------

    def _service(self) -> None:
        """Run everything that is due, flush bytes, re-arm the timer."""
        if self.hung or self._closed:
            return
        now = self._loop.time()
        self.port.on_timer(now)
        self._rx_line.on_timer(now)
        self._tx_line.on_timer(now)
        deadline = self._link.next_deadline()
        if deadline is not None and deadline <= now:
            self._handle_events(self._link.on_timer(now))
        self._run_apps(now)
        self._pump_output()
        self._flush_link(now)
        self._reschedule()

    def _flush_link(self, now: float) -> None:
        data = self._link.data_to_send()
        if data and self.port.is_open:
            self._tx_line.feed(data, now)
        # With the cable pulled the bytes are simply lost; the link retransmits later.

    def _next_deadline(self) -> float | None:
        candidates = [
            self._link.next_deadline(),
            self.port.next_deadline(),
            self._rx_line.next_deadline(),
            self._tx_line.next_deadline(),
        ]
        for job in self._exec_jobs:
            candidates.append(job.ready_at if job.timeout_at is None else job.timeout_at)
        for task in self._tasks.values():
            if task.running:
                if task.run.stop_requested:
                    candidates.append(task.run.started_at)  # due now: let it see the stop
                elif task.buffered() < self.profile.output_buffer:
                    candidates.append(task.run.next_wake())
                candidates.append(task.kill_at)
        times = [t for t in candidates if t is not None]
        return min(times) if times else None

    def _reschedule(self) -> None:
        if self.hung or self._closed:
            return
        self._wakeup.arm(self._next_deadline())

    # --- apps ---------------------------------------------------------------------------------

    def _run_apps(self, now: float) -> None:
        reboot = False
        for task in list(self._tasks.values()):
            if not task.running:
                continue
            if task.kill_at is not None and now >= task.kill_at:
                self._finish(task, KILLED_EXIT_CODE, "killed")
                continue
            wake = now if task.run.stop_requested else task.run.next_wake()
            room = self.profile.output_buffer - task.buffered()
            if room <= 0 or (wake is not None and wake > now):
                continue
            result = task.run.step(now, room)
            for out in result.output:
                stream = task.streams[out.stream]
                stream.pending += out.data
                stream.end += len(out.data)
            if result.reboot:
                reboot = True
            elif result.exit_code is not None:
                reason = "stopped" if task.stop_request else "exited"
                self._finish(task, result.exit_code, reason)
        if reboot:
            self._reset()

    def _finish(self, task: _Task, code: int, reason: str) -> None:
        task.exit_code = code
        task.reason = reason
        task.kill_at = None
        self._finished.append(task.task_id)
        self._forget_finished()
        self._update_load()  # the next PONG must not report the ended task

    def _forget_finished(self) -> None:
        """Forget the oldest finished tasks beyond the profile's `remembered_tasks`, but only those
        whose exit report has been sent (a burst of exits waits in the table until reported)."""
        excess = len(self._finished) - self.profile.remembered_tasks
        if excess <= 0:
            return
        kept: collections.deque[str] = collections.deque()
        for task_id in self._finished:
            task = self._tasks.get(task_id)
            if excess > 0 and (task is None or task.exit_reported):
                self._tasks.pop(task_id, None)
                excess -= 1
            else:
                kept.append(task_id)
        self._finished = kept

    def _pump_output(self) -> None:
        """Move retained output into the link while its queue has room, then exit reports."""
        self._pump_exec_output()
        self._pump_task_output()
        if self.misbehaviour.foreign_output:
            self._pump_foreign_output()  # after the real output: the device's tasks still run

    def _pump_task_output(self) -> None:
        link = self._link
        progress = True
        while progress and link.queued < MAX_QUEUED_OUTPUT:
            progress = False
            for task in self._tasks.values():
                for number, stream in task.streams.items():
                    if not stream.pending or link.queued >= MAX_QUEUED_OUTPUT:
                        continue
                    # Sized when sent: the gateway's max_frame (from WELCOME) and whether
                    # the session has task handles bound what fits.
                    size = self._output_capacity(task.task_id, stream.sent)
                    chunk = bytes(stream.pending[:size])
                    message = TaskOutput(
                        task_id=task.task_id,
                        stream=OutputStream(number),
                        offset=stream.sent,
                        data=chunk,
                    )
                    if not self._send(message):
                        return
                    del stream.pending[: len(chunk)]
                    progress = True
                if not task.running and not task.exit_reported and not task.buffered():
                    if not self._send(self._exit_report(task, task.stop_request)):
                        return
                    task.exit_reported = True
                    progress = True
        self._forget_finished()

    def _pump_exec_output(self) -> None:
        """Answer the EXECs that are due: EXEC_OUTPUT pieces while the link has room, then the
        EXEC_RESULT (or ERROR TIMEOUT for a command longer than its `timeout_ms`)."""
        now = self._loop.time()
        while self._exec_jobs:
            job = self._exec_jobs[0]
            request = job.request
            if job.timeout_at is not None and job.timeout_at <= now:
                text = f"{request.argv[0]} ran past timeout_ms {request.timeout_ms}"
                self._reject(request.request_id, ErrorCode.TIMEOUT, text, request.TYPE)
            elif job.ready_at > now:
                return
            elif not request.stream:
                result = job.result
                answer = ExecResult(
                    request.request_id, result.exit_code, result.stdout, result.stderr
                )
                self._send(fit_exec_result(answer, self._link.send_limit))
            else:
                if not self._pump_exec_streams(job):
                    return
                ends = {number: stream.end for number, stream in job.streams.items()}
                done = ExecResult(
                    request.request_id,
                    job.result.exit_code,
                    stdout_end=ends[1],
                    stderr_end=ends[STDERR],
                )
                if not self._send(done):
                    return
            self._exec_jobs.popleft()

    def _pump_exec_streams(self, job: _ExecJob) -> bool:
        """Queue the job's EXEC_OUTPUT pieces while the link takes them; True when all are."""
        frame = min(self._link.send_limit, self._link_config.max_frame)
        chunk = max_exec_output_data(frame)
        for number, stream in job.streams.items():
            while stream.pending:
                if self._link.queued >= MAX_QUEUED_OUTPUT:
                    return False
                data = bytes(stream.pending[:chunk])
                piece = ExecOutput(job.request.request_id, OutputStream(number), stream.sent, data)
                if not self._send(piece):
                    return False
                del stream.pending[: len(data)]
        return True

    def _pump_foreign_output(self) -> None:
        """Hostile firmware: output for task ids that do not exist, as fast as acks allow."""
        while self._link.queued < MAX_QUEUED_OUTPUT:
            n = self._rng.getrandbits(128)
            if self._foreign_sent % 2:
                task_id = f"{n:032x}"
            else:  # looks like one of the gateway's own ids
                h = f"{n:032x}"
                task_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}/0/0"
            message: Message
            if self._foreign_sent % 8 == 7:  # now and then, a start nobody asked for
                message = TaskStarted(0, task_id)
            else:
                offset = self._rng.randrange(1 << 32)
                message = TaskOutput(task_id, OutputStream.STDOUT, offset, self._rng.randbytes(32))
            if not self._send(message):
                return
            self._foreign_sent += 1

    @property
    def foreign_output_sent(self) -> int:
        """TASK_OUTPUT (and a few TASK_STARTED) frames sent for nonexistent tasks
        (Misbehaviour.foreign_output)."""
        return self._foreign_sent

    def _exit_report(self, task: _Task, request_id: int) -> TaskExited:
        assert task.exit_code is not None
        return TaskExited(
            request_id=request_id,
            task_id=task.task_id,
            exit_code=task.exit_code,
            reason=task.reason,
            stdout_end=task.streams[1].end,
            stderr_end=task.streams[STDERR].end,
        )

    def _send(self, message: Message) -> bool:
        """Queue `message`; False if the link's queue is full (try again later).

        Every message is built to fit the gateway's frame (`firmware_protocol.budget`), so a
        too-large one is a bug: it is logged and dropped (True), never retried in a loop."""
        try:
            self._link.send(message, self._loop.time())
        except QueueFullError:
            return False
        except MessageTooLargeError as exc:
            self._log.error("%s: bug, dropped a message: %s", self.device_id, exc)
        return True

    def _update_load(self) -> None:
        running = [t for t in self._tasks.values() if t.running]
        self._link.set_load(
            Load(
                mem_used=min(self.profile.memory_bytes, self.firmware_memory + 4096 * len(running)),
                cpu_permille=min(1000, 100 * len(running)),
                tasks=tuple(TaskLoad(task_id=t.task_id, mem_used=4096) for t in running),
            )
        )

    # --- requests from the gateway -----------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if isinstance(message, StartTask):
            self._start_task(message)
        elif isinstance(message, StopTask):
            self._stop_task(message)
        elif isinstance(message, ListTasks):
            self._send(self._task_list_page(message))
        elif isinstance(message, Exec):
            self._exec(message)

    def _reject(self, request_id: int, code: ErrorCode, text: str, msg_type: int) -> None:
        error = Error(request_id=request_id, code=code, message=text, msg_type=msg_type)
        self._send(fit_error(error, self._link.send_limit))

    def log(self, level: int, text: str) -> None:
        """Send a DEVICE_LOG line (cut to fit the gateway's frame, as firmware must)."""
        log = DeviceLog(level, text.encode()[:255].decode(errors="ignore"), self._uptime_ms())
        self._send(fit_device_log(log, self._link.send_limit))
        self._service()

    def _uptime_ms(self) -> int:
        return max(0, round((self._loop.time() - self._booted_at) * 1000))

    def _start_task(self, msg: StartTask) -> None:
        existing = self._tasks.get(msg.task_id)
        if existing is not None and existing.running:
            # Idempotent: a retried START for a running task just confirms it.
            self._send(TaskStarted(request_id=msg.request_id, task_id=msg.task_id))
            return
        if msg.app not in self.profile.apps:
            self._reject(msg.request_id, ErrorCode.NO_SUCH_APP, f"no app {msg.app!r}", msg.TYPE)
            return
        if sum(t.running for t in self._tasks.values()) >= self.profile.task_slots:
            self._reject(msg.request_id, ErrorCode.NO_SLOTS, "all task slots busy", msg.TYPE)
            return
        if existing is not None:
            self._tasks.pop(msg.task_id)
            self._finished.remove(msg.task_id)
        now = self._loop.time()
        run = APPS[msg.app](msg.argv, dict(msg.env), now)
        self._tasks[msg.task_id] = _Task(
            msg.task_id,
            msg.app,
            run,
            {1: _Stream(), STDERR: _Stream()},
            position=self._next_position,
        )
        self._next_position += 1
        self.starts[msg.task_id] += 1
        self._send(TaskStarted(request_id=msg.request_id, task_id=msg.task_id))
        self._update_load()

    def _stop_task(self, msg: StopTask) -> None:
        if self.ignore_stops > 0:
            self.ignore_stops -= 1
            self._log.debug("%s: ignoring %s (fault injection)", self.device_id, msg)
            return
        task = self._tasks.get(msg.task_id)
        if task is None:
            self._reject(
                msg.request_id, ErrorCode.NO_SUCH_TASK, f"no task {msg.task_id!r}", msg.TYPE
            )
            return
        if not task.running:
            if task.exit_reported:
                self._send(self._exit_report(task, msg.request_id))  # already over: say so again
            else:
                task.stop_request = msg.request_id
            return
        task.stop_request = msg.request_id
        task.kill_at = self._loop.time() + msg.grace_ms / 1000.0
        task.run.request_stop()
        self._update_load()

    def _task_list_page(self, request: ListTasks) -> TaskList:
        """One page of the task table from `request.cursor`, as much as fits the gateway's frame
        (PROTOCOL.md section 9, task-list paging)."""
        if self.misbehaviour.endless_task_list:
            # A lying firmware: always "more to come", repeating itself.
            return TaskList(request.request_id, self._task_infos()[:1], request.cursor + 1)
        entries = sorted((t.position, self._task_info(t)) for t in self._tasks.values())
        return task_list_page(request.request_id, entries, request.cursor, self._link.send_limit)

    def _task_infos(self) -> tuple[TaskInfo, ...]:
        return tuple(self._task_info(t) for t in self._tasks.values())

    @staticmethod
    def _task_info(t: _Task) -> TaskInfo:
        return TaskInfo(
            task_id=t.task_id,
            app=t.app,
            running=t.running,
            exit_code=t.exit_code,
            stdout_end=t.streams[1].end,
            stderr_end=t.streams[STDERR].end,
        )

    def _exec(self, msg: Exec) -> None:
        """Run a command of hil.emulator.shell; its answer leaves from `_pump_exec_output`.

        A profile without `streamed_exec` is a first-revision firmware: it ignores the EXEC's
        `stream` and answers with one EXEC_RESULT, cut to fit."""
        if not self.profile.streamed_exec and msg.stream:
            msg = dataclasses.replace(msg, stream=False)
        result = run_command(msg.argv, self.boot_id)
        now = self._loop.time()
        timeout_at = now + msg.timeout_ms / 1000 if msg.timeout_ms else None
        if timeout_at is not None and now + result.duration_s <= timeout_at:
            timeout_at = None  # finishes in time
        job = _ExecJob(msg, result, now + result.duration_s, timeout_at)
        for number, data in ((1, result.stdout), (STDERR, result.stderr)):
            job.streams[number] = _Stream(bytearray(data), len(data))
        self._exec_jobs.append(job)
