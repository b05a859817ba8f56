"""What a device session reports to the runtime layer: facts, task events, state changes, stats.

These types are the gateway's own, not the wire messages, so the runtime layer never imports the
protocol package and the wire format can evolve behind the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.link.state import SessionState

Stream = Literal["stdout", "stderr"]

# In `DeviceFacts.apps`: the backend runs any command, whatever the image (an SSH host).
ANY_APP = "*"


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """Who the device is and what it offers, from its handshake (HELLO) and our WELCOME."""

    device_id: str
    boot_id: int
    firmware_name: str
    firmware_version: str
    apps: tuple[str, ...]
    task_slots: int
    memory_bytes: int
    arch: str
    max_frame: int  # largest frame the device receives
    window: int  # frames the device accepts in flight
    protocol_version: int
    session_id: int
    transport: str  # "serial", "usb", "tcp"
    port: str  # where we reached it this time, e.g. /dev/pts/7 (changes across re-plugs)
    # Identity strings from HELLO, "" when the device does not send them.
    vendor: str = ""
    product: str = ""
    serial: str = ""
    # Backends that are whole computers (SSH hosts) tell their OS and CPU count.
    os: str = ""
    cpus: int = 0


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One task as the device reports it (LIST_TASKS), used for reconciliation."""

    task_id: str
    app: str
    running: bool
    exit_code: int | None
    stdout_end: int
    stderr_end: int


@dataclass(frozen=True, slots=True)
class TaskStarted:
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskOutput:
    """Bytes `data` at byte `offset` of the task's `stream`. Acknowledge with `ack_output` once
    persisted; offsets let the consumer drop repeats after a reconnect."""

    task_id: str
    stream: Stream
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class TaskExited:
    task_id: str
    exit_code: int
    reason: str  # the device's words: "exited", "stopped", "killed", ...
    stdout_end: int
    stderr_end: int


@dataclass(frozen=True, slots=True)
class TaskLost:
    """The task is gone without an exit report: the device rebooted, or forgot it."""

    task_id: str
    reason: str  # "device rebooted", "missing after reconnect", ...


@dataclass(frozen=True, slots=True)
class SessionStateChanged:
    old: SessionState
    new: SessionState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reconciled:
    """After a reconnect: which of the tasks we knew about are still there and which are lost."""

    rebooted: bool
    surviving: tuple[str, ...]
    lost: tuple[str, ...]
    device_tasks: tuple[TaskInfo, ...] = field(default=())


TaskEvent = TaskStarted | TaskOutput | TaskExited | TaskLost


@dataclass(frozen=True, slots=True)
class DeviceLogLine:
    """A line of the firmware's own log (DEVICE_LOG): level 0 debug, 1 info, 2 warning,
    3 error (higher: error too); the device's uptime when it logged it, 0 if not sent."""

    level: int
    text: str
    uptime_ms: int


SessionEvent = TaskEvent | SessionStateChanged | Reconciled | DeviceLogLine


@dataclass(slots=True)
class SessionStats:
    """Counters and gauges for one session (cumulative over reconnects)."""

    state: SessionState = SessionState.CONNECTING
    rtt_last: float | None = None  # seconds, last heartbeat round trip
    rtt_smoothed: float | None = None  # seconds, EWMA of heartbeat round trips
    heartbeats_sent: int = 0
    heartbeats_missed: int = 0
    retransmits: int = 0
    crc_errors: int = 0
    bad_frames: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connects: int = 0
    disconnects: int = 0
    last_error: str = ""
    # Reports (TASK_OUTPUT, TASK_STARTED) for task ids this session does not know: dropped,
    # so a broken or hostile device cannot grow the gateway's memory.
    dropped_reports: int = 0
    dropped_output_bytes: int = 0


@dataclass(frozen=True, slots=True)
class TaskLoadFigures:
    cpu_millicores: int = 0
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class DeviceLoad:
    """What the device last reported in a heartbeat answer (zeros where it reports nothing)."""

    sampled_ns: int  # wall clock, ns, when the answer arrived
    memory_bytes: int = 0
    cpu_millicores: int = 0  # thousandths of one core
    cpu_core_ns: int = 0  # cumulative CPU time, integrated from the reported rate
    tasks: dict[str, TaskLoadFigures] = field(default_factory=dict)
