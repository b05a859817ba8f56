"""The message catalogue: one frozen dataclass per message type, msgpack maps with integer keys.

``Message.to_bytes()`` gives the msgpack payload, ``Cls.from_bytes(payload)`` decodes and
validates it, and ``parse(frame)`` dispatches on the frame's type. Unknown map keys are ignored
(forward compatibility); missing optional fields take their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Self

import msgpack

from . import constants as c
from .constants import Role
from .errors import UnknownMessageTypeError
from .fields import (
    BOOL,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bin,
    Codec,
    FieldProblem,
    Optional,
    Seq,
    Str,
    StrPairs,
    UInt,
    wire,
)
from .framing import Frame, FrameFlags
from .wire_struct import EnumCodec, Nested, WireSpec, WireStruct, unpack_map, wire_specs

# The map <-> dataclass machinery lives in wire_struct; its names are importable from here too.
__all__ = [
    "MESSAGE_CLASSES",
    "Ack",
    "DeviceLog",
    "EnumCodec",
    "Error",
    "ErrorCode",
    "Exec",
    "ExecOutput",
    "ExecResult",
    "FrameLimit",
    "Hello",
    "HelloRequest",
    "ListTasks",
    "Load",
    "LogLevel",
    "Message",
    "MessageType",
    "Nested",
    "NonZeroU32",
    "OutputStream",
    "Ping",
    "Pong",
    "Refuse",
    "StartTask",
    "StopTask",
    "TaskData",
    "TaskExited",
    "TaskInfo",
    "TaskList",
    "TaskLoad",
    "TaskOutput",
    "TaskStarted",
    "Welcome",
    "WindowSize",
    "WireSpec",
    "WireStruct",
    "frame_for",
    "parse",
    "parse_payload",
    "request_id_of",
    "wire_specs",
]


class MessageType(IntEnum):
    """Frame type byte. 0x01-0x0F are link control, 0x10 and up carry application messages."""

    HELLO = 0x01
    WELCOME = 0x02
    REFUSE = 0x03
    HELLO_REQUEST = 0x04
    ACK = 0x05
    PING = 0x06
    PONG = 0x07
    START_TASK = 0x10
    STOP_TASK = 0x11
    LIST_TASKS = 0x12
    EXEC = 0x13
    TASK_STARTED = 0x20
    TASK_EXITED = 0x21
    TASK_OUTPUT = 0x22
    TASK_LIST = 0x23
    EXEC_RESULT = 0x24
    DEVICE_LOG = 0x25
    EXEC_OUTPUT = 0x26
    TASK_DATA = 0x27
    ERROR = 0x30


class ErrorCode(IntEnum):
    """ERROR / REFUSE codes. Receivers must accept codes they do not know (treat as INTERNAL)."""

    UNSUPPORTED = 1  # unknown message type
    MALFORMED = 2  # payload undecodable or a field invalid
    TOO_LARGE = 3  # a limit was exceeded (argv, env, frame)
    NO_SUCH_APP = 4
    NO_SUCH_TASK = 5
    NO_SLOTS = 6  # all task slots busy
    BUSY = 7  # try again later (e.g. an EXEC already running)
    INTERNAL = 8
    NO_COMMON_VERSION = 9  # REFUSE only
    TIMEOUT = 10
    WRONG_DIRECTION = 11  # a message the sender's role may not send


class OutputStream(IntEnum):
    STDOUT = 1
    STDERR = 2


class LogLevel(IntEnum):
    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


_TASK_ID = Str(c.MAX_TASK_ID, allow_empty=False)
_NAME = Str(c.MAX_NAME, allow_empty=False)
_ARG = Str(c.MAX_ARG)
_DATA = Bin(c.MAX_BYTES_FIELD)
_HANDLE = UInt(c.MAX_TASK_HANDLE)


@dataclass(frozen=True)
class FrameLimit(Codec[int]):
    """A declared largest frame: MIN_FRAME..MAX_FRAME_CEILING."""

    def decode(self, raw: Any) -> int:
        value = U16.decode(raw)
        if not c.MIN_FRAME <= value <= c.MAX_FRAME_CEILING:
            raise FieldProblem(f"{value} outside {c.MIN_FRAME}..{c.MAX_FRAME_CEILING}")
        return value


@dataclass(frozen=True)
class WindowSize(Codec[int]):
    def decode(self, raw: Any) -> int:
        value = U8.decode(raw)
        if not 1 <= value <= c.MAX_WINDOW:
            raise FieldProblem(f"{value} outside 1..{c.MAX_WINDOW}")
        return value


@dataclass(frozen=True)
class NonZeroU32(Codec[int]):
    def decode(self, raw: Any) -> int:
        value = U32.decode(raw)
        if value == 0:
            raise FieldProblem("must not be 0")
        return value


_FRAME_LIMIT = FrameLimit()
_WINDOW = WindowSize()
_NONZERO_U32 = NonZeroU32()


class Message(WireStruct):
    """Base of every message. Subclasses are frozen dataclasses."""

    TYPE: ClassVar[MessageType]
    #: Sequenced messages occupy a sequence number and are delivered reliably and in order.
    SEQUENCED: ClassVar[bool] = True
    #: Roles allowed to send this message.
    SENDERS: ClassVar[frozenset[Role]] = frozenset(Role)

    def to_bytes(self) -> bytes:
        """The msgpack payload (a map with integer keys, in ascending key order)."""
        packed: bytes = msgpack.packb(self.to_wire(), use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        return cls.from_wire(unpack_map(cls.__name__, payload))


_GATEWAY = frozenset({Role.GATEWAY})
_DEVICE = frozenset({Role.DEVICE})

# --- nested structures ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskLoad(WireStruct):
    task_id: str = field(metadata=wire(1, _TASK_ID))
    cpu_permille: int = field(default=0, metadata=wire(2, UInt(1000)))
    mem_used: int = field(default=0, metadata=wire(3, U32))


@dataclass(frozen=True, slots=True)
class Load(WireStruct):
    """Device load carried in PONG: memory in bytes, CPU in thousandths of one core."""

    mem_used: int = field(default=0, metadata=wire(1, U32))
    cpu_permille: int = field(default=0, metadata=wire(2, UInt(1000)))
    tasks: tuple[TaskLoad, ...] = field(
        default=(), metadata=wire(3, Seq(Nested(TaskLoad), c.MAX_TASK_SLOTS))
    )


@dataclass(frozen=True, slots=True)
class TaskInfo(WireStruct):
    """One task in a TASK_LIST reply: enough to reconcile pods after a reconnect."""

    task_id: str = field(metadata=wire(1, _TASK_ID))
    app: str = field(metadata=wire(2, _NAME))
    running: bool = field(metadata=wire(3, BOOL))
    exit_code: int | None = field(default=None, metadata=wire(4, Optional(I64)))
    stdout_end: int = field(default=0, metadata=wire(5, U64))
    stderr_end: int = field(default=0, metadata=wire(6, U64))


# --- link control (unsequenced) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Device introduces itself. Sent before the link is up, repeated until WELCOME or REFUSE."""

    TYPE = MessageType.HELLO
    SEQUENCED = False
    SENDERS = _DEVICE

    versions: tuple[int, ...] = field(metadata=wire(1, Seq(UInt(255), c.MAX_VERSIONS, 1)))
    device_id: str = field(metadata=wire(2, Str(c.MAX_DEVICE_ID, allow_empty=False)))
    boot_id: int = field(metadata=wire(3, _NONZERO_U32))
    firmware_name: str = field(metadata=wire(4, Str(c.MAX_NAME)))
    firmware_version: str = field(metadata=wire(5, Str(c.MAX_FIRMWARE_VERSION)))
    apps: tuple[str, ...] = field(metadata=wire(6, Seq(_NAME, c.MAX_APPS)))
    task_slots: int = field(metadata=wire(7, UInt(c.MAX_TASK_SLOTS)))
    memory_total: int = field(metadata=wire(8, U32))
    max_frame: int = field(metadata=wire(9, _FRAME_LIMIT))
    window: int = field(metadata=wire(10, _WINDOW))
    #: Session id of the last WELCOME this boot accepted, 0 if none: lets the gateway resume.
    last_session: int = field(default=0, metadata=wire(11, U32))
    arch: str = field(default="", metadata=wire(12, Str(c.MAX_NAME)))
    #: Handshake attempt of this boot (1, 2, ...): repeats of one attempt are identical, so the
    #: gateway can tell a repeat from a new attempt and an old, delayed attempt from both.
    attempt: int = field(default=0, metadata=wire(13, U32))
    #: Identity for the node's labels (USB-descriptor-like strings); optional, "" if unknown.
    vendor: str = field(default="", metadata=wire(14, Str(c.MAX_DEVICE_ID)))
    product: str = field(default="", metadata=wire(15, Str(c.MAX_DEVICE_ID)))
    serial: str = field(default="", metadata=wire(16, Str(c.MAX_DEVICE_ID)))
    #: Optional features the device speaks (bitmask, ``FEATURE_*``); the gateway accepts a
    #: subset in WELCOME ``features``. Absent: none.
    features: int = field(default=0, metadata=wire(17, U32, omit_default=True))


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """Gateway accepts a HELLO: the chosen version, its limits and the session resume decision."""

    TYPE = MessageType.WELCOME
    SEQUENCED = False
    SENDERS = _GATEWAY

    version: int = field(metadata=wire(1, UInt(255)))
    session_id: int = field(metadata=wire(2, _NONZERO_U32))
    max_frame: int = field(metadata=wire(3, _FRAME_LIMIT))
    window: int = field(metadata=wire(4, _WINDOW))
    #: True: both sides keep sequence state and unacked frames; False: both restart at seq 0.
    resume: bool = field(metadata=wire(5, BOOL))
    heartbeat_ms: int = field(metadata=wire(6, U32))
    link_lost_ms: int = field(metadata=wire(7, U32))
    #: The HELLO ``attempt`` this answers; a device ignores WELCOMEs for other attempts.
    attempt: int = field(default=0, metadata=wire(8, U32))
    #: The HELLO's ``features`` the gateway accepts for this session (never more than offered).
    features: int = field(default=0, metadata=wire(9, U32, omit_default=True))


@dataclass(frozen=True, slots=True)
class Refuse(Message):
    """No common version (or the peer is unacceptable). The link stays down."""

    TYPE = MessageType.REFUSE
    SEQUENCED = False

    code: int = field(metadata=wire(1, U16))
    reason: str = field(metadata=wire(2, Str(c.MAX_TEXT)))
    versions: tuple[int, ...] = field(default=(), metadata=wire(3, Seq(UInt(255), c.MAX_VERSIONS)))


@dataclass(frozen=True, slots=True)
class HelloRequest(Message):
    """Gateway asks the device to (re)send HELLO, e.g. after the gateway restarted."""

    TYPE = MessageType.HELLO_REQUEST
    SEQUENCED = False
    SENDERS = _GATEWAY


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Pure acknowledgement: the header's ack field is the content."""

    TYPE = MessageType.ACK
    SEQUENCED = False


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TYPE = MessageType.PING
    SEQUENCED = False

    nonce: int = field(metadata=wire(1, U32))


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """Answer to PING, echoing its nonce; a device attaches its current load."""

    TYPE = MessageType.PONG
    SEQUENCED = False

    nonce: int = field(metadata=wire(1, U32))
    load: Load | None = field(default=None, metadata=wire(2, Optional(Nested(Load))))


# --- gateway -> device requests (sequenced) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTask(Message):
    """Start ``app`` as task ``task_id``. Idempotent per task id while the task runs."""

    TYPE = MessageType.START_TASK
    SENDERS = _GATEWAY

    request_id: int = field(metadata=wire(0, _NONZERO_U32))
    task_id: str = field(metadata=wire(1, _TASK_ID))
    app: str = field(metadata=wire(2, _NAME))
    argv: tuple[str, ...] = field(default=(), metadata=wire(3, Seq(_ARG, c.MAX_ARGS)))
    env: tuple[tuple[str, str], ...] = field(
        default=(), metadata=wire(4, StrPairs(Str(c.MAX_ARG, False), _ARG, c.MAX_ENV))
    )


@dataclass(frozen=True, slots=True)
class StopTask(Message):
    """Stop a task: ask it to exit, kill it after ``grace_ms``. Answered by TASK_EXITED."""

    TYPE = MessageType.STOP_TASK
    SENDERS = _GATEWAY

    request_id: int = field(metadata=wire(0, _NONZERO_U32))
    task_id: str = field(metadata=wire(1, _TASK_ID))
    grace_ms: int = field(default=0, metadata=wire(2, U32))


@dataclass(frozen=True, slots=True)
class ListTasks(Message):
    """Ask for the device's tasks from position ``cursor`` of its task table (0: the start).

    The cursor is the device's own, opaque to the gateway: it repeats LIST_TASKS with each
    reply's ``next_cursor`` until a reply has none (PROTOCOL.md section 9, task-list paging)."""

    TYPE = MessageType.LIST_TASKS
    SENDERS = _GATEWAY

    request_id: int = field(metadata=wire(0, _NONZERO_U32))
    cursor: int = field(default=0, metadata=wire(1, U32, omit_default=True))


@dataclass(frozen=True, slots=True)
class Exec(Message):
    """One-shot command (kubectl exec), optionally in the context of a running task."""

    TYPE = MessageType.EXEC
    SENDERS = _GATEWAY

    request_id: int = field(metadata=wire(0, _NONZERO_U32))
    argv: tuple[str, ...] = field(metadata=wire(1, Seq(_ARG, c.MAX_ARGS, 1)))
    timeout_ms: int = field(default=0, metadata=wire(2, U32))
    task_id: str = field(default="", metadata=wire(3, Str(c.MAX_TASK_ID)))
    #: The gateway takes the output as EXEC_OUTPUT frames before the EXEC_RESULT (section 9,
    #: streamed exec output). Written only when set, so a plain EXEC keeps its original bytes.
    stream: bool = field(default=False, metadata=wire(4, BOOL, omit_default=True))


# --- device -> gateway reports (sequenced) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskStarted(Message):
    TYPE = MessageType.TASK_STARTED
    SENDERS = _DEVICE

    request_id: int = field(metadata=wire(0, U32))
    task_id: str = field(metadata=wire(1, _TASK_ID))


@dataclass(frozen=True, slots=True)
class TaskExited(Message):
    """A task ended. ``request_id`` is the STOP_TASK it answers, 0 if it exited by itself.

    ``stdout_end``/``stderr_end`` are the stream lengths, so the receiver knows whether it has
    all the output.
    """

    TYPE = MessageType.TASK_EXITED
    SENDERS = _DEVICE

    request_id: int = field(metadata=wire(0, U32))
    task_id: str = field(metadata=wire(1, _TASK_ID))
    exit_code: int = field(metadata=wire(2, I64))
    reason: str = field(metadata=wire(3, Str(c.MAX_REASON)))
    stdout_end: int = field(default=0, metadata=wire(4, U64))
    stderr_end: int = field(default=0, metadata=wire(5, U64))


@dataclass(frozen=True, slots=True)
class TaskOutput(Message):
    """Bytes a task wrote. ``offset`` is the stream position of ``data[0]``: gaps and repeats
    are visible to the receiver."""

    TYPE = MessageType.TASK_OUTPUT
    SENDERS = _DEVICE

    task_id: str = field(metadata=wire(1, _TASK_ID))
    stream: OutputStream = field(metadata=wire(2, EnumCodec(OutputStream)))
    offset: int = field(metadata=wire(3, U64))
    data: bytes = field(metadata=wire(4, _DATA))
    #: With the TASK_HANDLES feature: binds this handle to ``task_id`` for the rest of the
    #: session, so later output of the task can travel as TASK_DATA. Absent: no binding.
    handle: int | None = field(default=None, metadata=wire(5, _HANDLE, omit_default=True))


@dataclass(frozen=True, slots=True)
class TaskData(Message):
    """TASK_OUTPUT naming its task by a handle that an earlier TASK_OUTPUT of this session bound
    (feature TASK_HANDLES): a byte instead of a 40-byte task id in every output frame. The
    receiving link turns it back into a TaskOutput; applications never see one."""

    TYPE = MessageType.TASK_DATA
    SENDERS = _DEVICE

    handle: int = field(metadata=wire(1, _HANDLE))
    stream: OutputStream = field(metadata=wire(2, EnumCodec(OutputStream)))
    offset: int = field(metadata=wire(3, U64))
    data: bytes = field(metadata=wire(4, _DATA))


@dataclass(frozen=True, slots=True)
class TaskList(Message):
    """One page of the device's tasks, as many as fit one frame. ``next_cursor`` (greater than
    the request's cursor) is where the next page starts; absent on the last page."""

    TYPE = MessageType.TASK_LIST
    SENDERS = _DEVICE

    request_id: int = field(metadata=wire(0, U32))
    tasks: tuple[TaskInfo, ...] = field(
        default=(), metadata=wire(1, Seq(Nested(TaskInfo), c.MAX_TASKS_LISTED))
    )
    next_cursor: int | None = field(default=None, metadata=wire(2, U32, omit_default=True))


@dataclass(frozen=True, slots=True)
class ExecResult(Message):
    TYPE = MessageType.EXEC_RESULT
    SENDERS = _DEVICE

    request_id: int = field(metadata=wire(0, U32))
    exit_code: int = field(metadata=wire(1, I64))
    stdout: bytes = field(default=b"", metadata=wire(2, _DATA))
    stderr: bytes = field(default=b"", metadata=wire(3, _DATA))
    #: Output was cut to fit one frame.
    truncated: bool = field(default=False, metadata=wire(4, BOOL))
    #: Streamed exec (EXEC ``stream``): the stream lengths, so the gateway knows whether it has
    #: every EXEC_OUTPUT byte. Absent in a single-frame result.
    stdout_end: int | None = field(default=None, metadata=wire(5, U64, omit_default=True))
    stderr_end: int | None = field(default=None, metadata=wire(6, U64, omit_default=True))


@dataclass(frozen=True, slots=True)
class ExecOutput(Message):
    """Bytes a streamed EXEC wrote, sent before its EXEC_RESULT. ``offset`` is the stream
    position of ``data[0]``, as in TASK_OUTPUT."""

    TYPE = MessageType.EXEC_OUTPUT
    SENDERS = _DEVICE

    request_id: int = field(metadata=wire(0, U32))
    stream: OutputStream = field(metadata=wire(1, EnumCodec(OutputStream)))
    offset: int = field(metadata=wire(2, U64))
    data: bytes = field(metadata=wire(3, _DATA))


@dataclass(frozen=True, slots=True)
class DeviceLog(Message):
    TYPE = MessageType.DEVICE_LOG
    SENDERS = _DEVICE

    level: int = field(metadata=wire(1, U8))
    text: str = field(metadata=wire(2, Str(c.MAX_TEXT)))
    uptime_ms: int = field(default=0, metadata=wire(3, U64))


@dataclass(frozen=True, slots=True)
class Error(Message):
    """Negative reply. ``request_id`` 0 when the failed frame carried none; ``msg_type`` is the
    type of the frame that caused it (0 if unknown)."""

    TYPE = MessageType.ERROR

    request_id: int = field(metadata=wire(0, U32))
    code: int = field(metadata=wire(1, U16))
    message: str = field(default="", metadata=wire(2, Str(c.MAX_TEXT)))
    msg_type: int = field(default=0, metadata=wire(3, U8))


MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Welcome,
        Refuse,
        HelloRequest,
        Ack,
        Ping,
        Pong,
        StartTask,
        StopTask,
        ListTasks,
        Exec,
        TaskStarted,
        TaskExited,
        TaskOutput,
        TaskList,
        ExecResult,
        DeviceLog,
        ExecOutput,
        TaskData,
        Error,
    )
}


def parse_payload(msg_type: int, payload: bytes) -> Message:
    """Decode a payload of the given type. Raises a ``MessageError`` subclass."""
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise UnknownMessageTypeError(msg_type)
    return cls.from_bytes(payload)


def parse(frame: Frame) -> Message:
    """The single entry point from a decoded frame to a message."""
    return parse_payload(frame.type, frame.payload)


def request_id_of(payload: bytes) -> int:
    """Best-effort request id (key 0) of a payload that failed to decode, 0 if none."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        return 0
    if isinstance(raw, dict):
        value = raw.get(0)
        if type(value) is int and 0 <= value <= 0xFFFFFFFF:
            return value
    return 0


def frame_for(
    message: Message,
    *,
    version: int = c.PROTOCOL_VERSION,
    seq: int = 0,
    ack: int | None = None,
) -> Frame:
    """Wrap a message in a frame. ``ack`` None leaves the ACK flag clear."""
    flags = FrameFlags.SEQ if message.SEQUENCED else FrameFlags.NONE
    if ack is not None:
        flags |= FrameFlags.ACK
    return Frame(version, message.TYPE, flags, seq, ack or 0, message.to_bytes())
