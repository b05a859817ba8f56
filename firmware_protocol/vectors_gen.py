"""Generate the golden vectors in ``vectors/`` and the worked example in PROTOCOL.md.

    python -m firmware_protocol.vectors_gen           # rewrite the files
    python -m firmware_protocol.vectors_gen --check   # exit 1 if they are stale

The vectors are data for any implementation in any language: message frames with their exact
bytes, corrupted streams with the decoder outcome, invalid messages with the error, and two
complete exchanges produced by running two ``Link`` objects against each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgpack
from cobs import cobs

from .budget import task_list_page
from .constants import FEATURE_TASK_HANDLES, MAX_FRAME_CEILING, MAX_WINDOW, MIN_FRAME, Role
from .crc import CRC32_CHECK, crc32
from .errors import FieldError, MessageError, UnknownMessageTypeError
from .fields import Bin, Bool, Codec, Optional, Seq, SInt, Str, StrPairs, UInt
from .framing import Frame, FrameDecoder, FrameFlags
from .link import Link, LinkConfig
from .messages import (
    MESSAGE_CLASSES,
    Ack,
    DeviceLog,
    EnumCodec,
    Error,
    ErrorCode,
    Exec,
    ExecOutput,
    ExecResult,
    FrameLimit,
    Hello,
    HelloRequest,
    ListTasks,
    Load,
    LogLevel,
    Message,
    MessageType,
    Nested,
    NonZeroU32,
    OutputStream,
    Ping,
    Pong,
    Refuse,
    StartTask,
    StopTask,
    TaskData,
    TaskExited,
    TaskInfo,
    TaskList,
    TaskLoad,
    TaskOutput,
    TaskStarted,
    Welcome,
    WindowSize,
    WireStruct,
    frame_for,
    parse,
    wire_specs,
)

HERE = Path(__file__).parent
VECTORS = HERE / "vectors"
SPEC = HERE / "PROTOCOL.md"
BEGIN = "<!-- BEGIN GENERATED EXAMPLE (python -m firmware_protocol.vectors_gen) -->"
END = "<!-- END GENERATED EXAMPLE -->"
BEGIN_PAGING = "<!-- BEGIN GENERATED PAGING (python -m firmware_protocol.vectors_gen) -->"
END_PAGING = "<!-- END GENERATED PAGING -->"
BEGIN_CATALOGUE = "<!-- BEGIN GENERATED CATALOGUE (python -m firmware_protocol.vectors_gen) -->"
END_CATALOGUE = "<!-- END GENERATED CATALOGUE -->"

HELLO = Hello(
    versions=(1,),
    device_id="e6614103e7a1b22c",
    boot_id=0x1A2B3C4D,
    firmware_name="wirelet-fw",
    firmware_version="0.3.1",
    apps=("blink", "echo"),
    task_slots=4,
    memory_total=65536,
    max_frame=512,
    window=4,
    last_session=0,
    arch="armv6m",
    vendor="Raspberry Pi",
    product="Pico",
    serial="E6614103E7A1B22C",
    features=FEATURE_TASK_HANDLES,
)
WELCOME = Welcome(1, 0x5E55104E, 1024, 8, False, 2000, 6000, features=FEATURE_TASK_HANDLES)


def sample_messages() -> list[tuple[str, Message]]:
    """At least one message of every type, plus edge cases (limits, empty, non-ASCII)."""
    return [
        ("hello", HELLO),
        ("hello_resume", HELLO.__class__(**{**_fields(HELLO), "last_session": 0x5E55104E})),
        ("welcome", WELCOME),
        ("refuse", Refuse(ErrorCode.NO_COMMON_VERSION, "no common protocol version", (1,))),
        ("hello_request", HelloRequest()),
        ("ack", Ack()),
        ("ping", Ping(7)),
        ("pong_gateway", Pong(7)),
        (
            "pong_device_load",
            Pong(7, Load(20480, 125, (TaskLoad("pod-1/blink", 100, 2048),))),
        ),
        (
            "start_task",
            StartTask(1, "pod-1/blink", "blink", ("--hz", "2"), (("COLOR", "green"),)),
        ),
        ("start_task_minimal", StartTask(0xFFFFFFFF, "t", "echo")),
        ("stop_task", StopTask(2, "pod-1/blink", 30000)),
        ("list_tasks", ListTasks(3)),
        ("list_tasks_cursor", ListTasks(3, cursor=2)),
        ("exec", Exec(4, ("cat", "/proc/meminfo"), 5000, "pod-1/blink")),
        ("exec_stream", Exec(5, ("seq", "1000"), 30000, "pod-1/blink", stream=True)),
        ("task_started", TaskStarted(1, "pod-1/blink")),
        ("task_exited_stopped", TaskExited(2, "pod-1/blink", -15, "stopped", 128, 0)),
        ("task_exited_self", TaskExited(0, "pod-1/echo", 0, "completed", 6, 0)),
        ("task_output_stdout", TaskOutput("pod-1/blink", OutputStream.STDOUT, 0, b"on\n")),
        ("task_output_stderr", TaskOutput("pod-1/blink", OutputStream.STDERR, 1 << 40, b"\x00")),
        (
            "task_output_binding",
            TaskOutput("pod-1/blink", OutputStream.STDOUT, 0, b"on\n", handle=0),
        ),
        ("task_data", TaskData(0, OutputStream.STDOUT, 3, b"off\n")),
        (
            "task_list",
            TaskList(
                3,
                (
                    TaskInfo("pod-1/blink", "blink", True, None, 128, 0),
                    TaskInfo("pod-1/echo", "echo", False, 0, 6, 0),
                ),
            ),
        ),
        ("task_list_empty", TaskList(3)),
        (
            "task_list_page",
            TaskList(3, (TaskInfo("pod-1/blink", "blink", True, None, 128, 0),), next_cursor=2),
        ),
        ("exec_result", ExecResult(4, 0, b"MemFree: 20 kB\n", b"", False)),
        ("exec_output_stdout", ExecOutput(5, OutputStream.STDOUT, 0, b"1\n2\n3\n")),
        ("exec_output_stderr", ExecOutput(5, OutputStream.STDERR, 1 << 33, b"warn\n")),
        ("exec_result_streamed", ExecResult(5, 0, stdout_end=3893, stderr_end=0)),
        ("device_log", DeviceLog(LogLevel.WARNING, "heap low: 1.2 kB frei \u2713", 123456)),
        ("error", Error(1, ErrorCode.NO_SUCH_APP, "no app 'nginx'", 0x10)),
    ]


def _fields(message: WireStruct) -> dict[str, Any]:
    return {spec.name: getattr(message, spec.name) for spec in wire_specs(type(message))}


def _wire_fields(message: WireStruct) -> dict[str, Any]:
    """The fields as on the wire: a key left out when it holds its default is left out here."""
    return {
        spec.name: getattr(message, spec.name)
        for spec in wire_specs(type(message))
        if not (spec.omit_default and getattr(message, spec.name) == spec.default)
    }


def to_json(value: Any) -> Any:
    """Message values as JSON: bytes as {"hex": ...}, nested structs as objects."""
    if isinstance(value, WireStruct):
        fields = _wire_fields(value)
        return {"type": type(value).__name__, **{k: to_json(v) for k, v in fields.items()}}
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    return value


def _frame_json(frame: Frame) -> dict[str, Any]:
    return {
        "version": frame.version,
        "type": frame.type,
        "flags": int(frame.flags),
        "seq": frame.seq,
        "ack": frame.ack,
        "payload_hex": frame.payload.hex(),
        "raw_hex": frame.raw().hex(),
        "crc32": f"{crc32(frame.raw()[:-4]):08x}",
        "wire_hex": frame.to_bytes().hex(),
    }


def message_vectors() -> dict[str, Any]:
    vectors = []
    for index, (name, message) in enumerate(sample_messages()):
        seq = index if message.SEQUENCED else 0
        frame = frame_for(message, seq=seq, ack=index + 1 if message.SEQUENCED else None)
        vectors.append({"name": name, "message": to_json(message), "frame": _frame_json(frame)})
    return {
        "description": "Valid frames: encoding `message` with the header fields must give "
        "`frame.wire_hex` byte for byte; decoding it must give `message` back.",
        "vectors": vectors,
    }


def _flip(data: bytes, byte: int, mask: int = 0x01) -> bytes:
    buf = bytearray(data)
    buf[byte] ^= mask
    return bytes(buf)


def _bad_crc(frame: Frame, raw_byte: int) -> bytes:
    """A well-formed COBS block whose frame fails only the CRC."""
    return bytes(cobs.encode(_flip(frame.raw(), raw_byte))) + b"\x00"


def _outcome(wire: bytes, max_frame: int) -> dict[str, Any]:
    decoder = FrameDecoder(max_frame=max_frame)
    frames = decoder.feed(wire)
    s = decoder.stats
    return {
        "frames": [_frame_json(f)["raw_hex"] for f in frames],
        "bad_cobs": s.bad_cobs,
        "too_short": s.too_short,
        "oversize": s.oversize,
        "bad_crc": s.bad_crc,
    }


def stream_vectors() -> dict[str, Any]:
    ping = frame_for(Ping(1), ack=0)
    good = ping.to_bytes()
    good2 = frame_for(TaskStarted(1, "t"), seq=0, ack=0).to_bytes()
    big = frame_for(TaskOutput("t", OutputStream.STDOUT, 0, bytes(200)), seq=0, ack=0)
    cases: list[tuple[str, str, bytes, int]] = [
        ("two_frames", "two valid frames back to back", good + good2, 512),
        ("leading_delimiters", "empty blocks are skipped, not errors", b"\x00\x00" + good, 512),
        ("garbage_then_frame", "noise, a delimiter, then a frame", b"\xff\x13\x00" + good, 512),
        (
            "garbage_glued_to_frame",
            "noise without delimiter spoils the next frame",
            b"\xff\x13" + good,
            512,
        ),
        ("bad_crc_payload_bit", "one payload bit flipped", _bad_crc(ping, 8), 512),
        ("bad_crc_trailer", "CRC byte flipped", _flip(good, len(good) - 3), 512),
        ("bad_crc_header", "header bit flipped (seq)", _bad_crc(ping, 3), 512),
        ("wire_flip_cobs_code", "first COBS code byte flipped", _flip(good, 0, 0x08), 512),
        ("truncated", "frame cut short, next frame follows", good[:6] + b"\x00" + good2, 512),
        ("too_short_runt", "valid COBS but fewer than 11 bytes", b"\x04\x01\x02\x03\x00", 512),
        ("bad_cobs_code", "a COBS code byte points past the end", b"\x09\x01\x02\x00", 512),
        (
            "lost_delimiter",
            "delimiter corrupted: two frames merge",
            good[:-1] + b"\x01" + good2,
            512,
        ),
        ("oversize", "frame larger than the receiver's max_frame", big.to_bytes(), 128),
        (
            "oversize_unterminated_run",
            "bytes without a delimiter beyond any frame",
            b"\x01" * 300 + b"\x00" + good,
            128,
        ),
        ("unterminated", "no delimiter yet: nothing decoded, nothing dropped", good[:-1], 512),
    ]
    return {
        "description": "Byte streams fed to a FrameDecoder(max_frame) in one piece: the frames "
        "it must return (raw hex, before COBS) and the drop counters it must report.",
        "vectors": [
            {"name": n, "what": what, "max_frame": m, "wire_hex": w.hex(), "expect": _outcome(w, m)}
            for n, what, w, m in cases
        ],
    }


def _error_of(frame: Frame) -> dict[str, Any]:
    try:
        parse(frame)
    except UnknownMessageTypeError as exc:
        return {
            "error": "unknown_type",
            "reply_code": int(ErrorCode.UNSUPPORTED),
            "detail": str(exc),
        }
    except FieldError as exc:
        return {
            "error": "field",
            "field": exc.field,
            "reply_code": int(ErrorCode.MALFORMED),
            "detail": str(exc),
        }
    except MessageError as exc:
        return {"error": "malformed", "reply_code": int(ErrorCode.MALFORMED), "detail": str(exc)}
    raise AssertionError(f"frame {frame} unexpectedly valid")


def invalid_message_vectors() -> dict[str, Any]:
    seq = FrameFlags.SEQ | FrameFlags.ACK

    def frame(msg_type: int, payload: Any) -> Frame:
        raw = payload if isinstance(payload, bytes) else msgpack.packb(payload, use_bin_type=True)
        return Frame(1, msg_type, seq, 0, 0, raw)

    cases = [
        ("unknown_type", frame(0x7E, {0: 9})),
        ("not_msgpack", frame(0x10, b"\xc1")),
        ("not_a_map", frame(0x10, [1, "t", "blink"])),
        ("trailing_bytes", frame(0x10, b"\x80\x80")),
        ("missing_field", frame(0x10, {0: 1, 1: "t"})),
        ("wrong_type", frame(0x10, {0: 1, 1: "t", 2: 5})),
        ("bool_is_not_int", frame(0x10, {0: True, 1: "t", 2: "blink"})),
        ("zero_request_id", frame(0x10, {0: 0, 1: "t", 2: "blink"})),
        ("empty_task_id", frame(0x10, {0: 1, 1: "", 2: "blink"})),
        ("task_id_too_long", frame(0x10, {0: 1, 1: "x" * 49, 2: "blink"})),
        ("argv_too_many", frame(0x10, {0: 1, 1: "t", 2: "blink", 3: ["a"] * 33})),
        ("argv_entry_too_long", frame(0x10, {0: 1, 1: "t", 2: "blink", 3: ["a" * 256]})),
        ("env_too_many", frame(0x10, {0: 1, 1: "t", 2: "b", 4: {f"K{i}": "v" for i in range(33)}})),
        ("env_value_not_str", frame(0x10, {0: 1, 1: "t", 2: "blink", 4: {"K": 1}})),
        # A msgpack str whose bytes are not UTF-8 (packed by hand: packb would refuse).
        ("invalid_utf8", frame(0x10, b"\x83\x00\x01\x01\xa2\xff\xfe\x02\xa5blink")),
        ("negative_offset", frame(0x22, {1: "t", 2: 1, 3: -1, 4: b""})),
        ("unknown_stream", frame(0x22, {1: "t", 2: 3, 3: 0, 4: b""})),
        ("data_not_bin", frame(0x22, {1: "t", 2: 1, 3: 0, 4: "text"})),
        ("exec_empty_argv", frame(0x13, {0: 1, 1: []})),
        ("task_data_handle_too_large", frame(0x27, {1: 128, 2: 1, 3: 0, 4: b""})),
        ("task_output_handle_too_large", frame(0x22, {1: "t", 2: 1, 3: 0, 4: b"", 5: 128})),
        ("hello_no_versions", frame(0x01, {**HELLO.to_wire(), 1: []})),
        ("hello_window_zero", frame(0x01, {**HELLO.to_wire(), 10: 0})),
        ("hello_frame_too_small", frame(0x01, {**HELLO.to_wire(), 9: 64})),
        # 128 was the minimum before task-list paging; a maximal TASK_EXITED needs 166 bytes.
        ("hello_frame_below_minimum", frame(0x01, {**HELLO.to_wire(), 9: MIN_FRAME - 1})),
        ("list_tasks_cursor_overflow", frame(0x12, {0: 3, 1: 1 << 32})),
        ("task_list_next_cursor_negative", frame(0x23, {0: 3, 1: [], 2: -1})),
        ("task_list_next_cursor_nil", frame(0x23, {0: 3, 1: [], 2: None})),
        ("pong_bad_nested_load", frame(0x07, {1: 1, 2: {1: -5}})),
        ("u32_overflow", frame(0x11, {0: 1 << 32, 1: "t"})),
    ]
    return {
        "description": "Intact frames whose message must be rejected. `error` is unknown_type, "
        "malformed (not one msgpack map) or field (`field` names it); `reply_code` is the "
        "ERROR code a link answers a sequenced frame with.",
        "vectors": [{"name": n, "frame": _frame_json(f), "expect": _error_of(f)} for n, f in cases],
    }


def crc_vectors() -> dict[str, Any]:
    samples = [b"123456789", b"", b"\x00", b"\xff" * 4, bytes(range(256))]
    return {
        "description": "CRC-32/ISO-HDLC: poly 0x04C11DB7, init 0xFFFFFFFF, refin/refout true, "
        "xorout 0xFFFFFFFF; sent big-endian after the payload.",
        "check": f"{CRC32_CHECK:08x}",
        "vectors": [{"data_hex": s.hex(), "crc32": f"{crc32(s):08x}"} for s in samples],
    }


def _record(direction: str, data: bytes, log: list[dict[str, Any]]) -> None:
    for frame in FrameDecoder().feed(data):
        message = parse(frame)
        log.append(
            {
                "from": direction,
                "message": to_json(message),
                "header": {
                    "version": frame.version,
                    "type": frame.type,
                    "flags": int(frame.flags),
                    "seq": frame.seq,
                    "ack": frame.ack,
                },
                "wire_hex": frame.to_bytes().hex(),
            }
        )


def exchanges() -> dict[str, Any]:
    """Run a device and a gateway Link over a perfect line and record every frame."""
    device = Link(Role.DEVICE, LinkConfig(), hello=HELLO)
    gateway = Link(
        Role.GATEWAY, LinkConfig(max_frame=1024, window=8), session_id=WELCOME.session_id
    )
    handshake: list[dict[str, Any]] = []
    device.start(0.0)
    hello = device.data_to_send()
    _record("device", hello, handshake)
    gateway.receive_data(hello, 0.01)
    welcome = gateway.data_to_send()
    _record("gateway", welcome, handshake)
    device.receive_data(welcome, 0.02)

    task: list[dict[str, Any]] = []

    def gw_to_dev(now: float) -> None:
        data = gateway.data_to_send()
        _record("gateway", data, task)
        device.receive_data(data, now)

    def dev_to_gw(now: float) -> None:
        data = device.data_to_send()
        _record("device", data, task)
        gateway.receive_data(data, now)

    gateway.send(StartTask(1, "pod-1/echo", "echo", ("hello",), (("LANG", "C"),)), 0.1)
    gw_to_dev(0.11)
    device.send(TaskStarted(1, "pod-1/echo"), 0.11)
    device.send(TaskOutput("pod-1/echo", OutputStream.STDOUT, 0, b"hello\n"), 0.11)
    device.send(TaskExited(0, "pod-1/echo", 0, "completed", 6, 0), 0.11)
    dev_to_gw(0.12)
    gw_to_dev(0.13)
    return {
        "description": "Frames in the order they cross the line between a device Link and a "
        "gateway Link (perfect line, no heartbeat due).",
        "handshake": handshake,
        "start_output_exit": task,
    }


#: A device's fixed task table (slot index -> task, None for a free slot) for the paging
#: vectors: the cursor is the slot index, the intended implementation (PROTOCOL.md section 9).
PAGING_TABLE: tuple[TaskInfo | None, ...] = (
    TaskInfo("0b6f3c2e-8d41-4a7e-9c15-2f7b9e4d6a18/0/0", "blink", True, None, 4096, 0),
    None,
    TaskInfo("5e2d8a90-1c3f-4b6d-8e27-9a4c1f0b3d75/0/2", "counter", False, 0, 1200, 17),
    TaskInfo("a91c4e7b-2f60-4d38-b5e9-0c7d3a8f1e24/1/0", "echo", False, -15, 6, 0),
    None,
    TaskInfo("d4e7a1c9-6b02-4f85-a3d6-8e1b5c9f2a47/0/0", "blink", True, None, 70000, 512),
    TaskInfo("x" * 48, "a" * 32, False, -(2**63), 2**64 - 1, 2**64 - 1),
)
#: The gateway's declared max_frame in the paging vectors: the protocol's minimum.
PAGING_MAX_FRAME = MIN_FRAME


def paging_vectors() -> dict[str, Any]:
    """LIST_TASKS / TASK_LIST pages for `PAGING_TABLE` at `PAGING_MAX_FRAME`."""
    entries = [(slot, info) for slot, info in enumerate(PAGING_TABLE) if info is not None]
    pages = []
    cursor: int | None = 0
    request_id = 10
    while cursor is not None:
        request = ListTasks(request_id, cursor)
        reply = task_list_page(request_id, entries, cursor, PAGING_MAX_FRAME)
        pages.append(
            {
                "request": to_json(request),
                "request_frame": _frame_json(frame_for(request, seq=request_id - 10, ack=0)),
                "reply": to_json(reply),
                "reply_frame": _frame_json(frame_for(reply, seq=request_id - 10, ack=0)),
            }
        )
        cursor = reply.next_cursor
        request_id += 1
    return {
        "description": "Task-list paging: a device whose task table is `table` (index = slot, "
        "null = free slot; the cursor is the slot index) answers each LIST_TASKS with as many "
        "tasks as fit the gateway's `max_frame`, and `next_cursor` while tasks remain. Every "
        "reply frame is at most `max_frame` bytes (header, payload and CRC).",
        "max_frame": PAGING_MAX_FRAME,
        "table": [to_json(info) for info in PAGING_TABLE],
        "pages": pages,
    }


def generate() -> dict[str, str]:
    """File name -> content for every generated vector file."""
    files = {
        "crc.json": crc_vectors(),
        "messages.json": message_vectors(),
        "streams.json": stream_vectors(),
        "invalid_messages.json": invalid_message_vectors(),
        "exchanges.json": exchanges(),
        "paging.json": paging_vectors(),
    }
    return {
        name: json.dumps(data, indent=1, ensure_ascii=False) + "\n" for name, data in files.items()
    }


def _hexdump(hex_text: str) -> str:
    pairs = [hex_text[i : i + 2] for i in range(0, len(hex_text), 2)]
    return "\n".join(" ".join(pairs[i : i + 24]) for i in range(0, len(pairs), 24))


def example_markdown() -> str:
    data = exchanges()
    out = []
    for title, key in (("Handshake", "handshake"), ("Start, output, exit", "start_output_exit")):
        out.append(f"#### {title}\n")
        for entry in data[key]:
            h = entry["header"]
            msg = dict(entry["message"])
            name = msg.pop("type")
            out.append(
                f"{entry['from']} → {name}  (version {h['version']}, type 0x{h['type']:02x}, "
                f"flags 0x{h['flags']:02x}, seq {h['seq']}, ack {h['ack']})\n"
            )
            raw = Frame.from_bytes(bytes.fromhex(entry["wire_hex"])).raw().hex()
            out.append(
                f"```\n{json.dumps(msg, ensure_ascii=False)}\n"
                f"header:  {_hexdump(raw[:14])}\n"
                f"payload: {_hexdump(raw[14:-8])}\n"
                f"crc32:   {_hexdump(raw[-8:])}\n"
                f"wire (COBS, then 00):\n{_hexdump(entry['wire_hex'])}\n```\n"
            )
    return "\n".join(out)


def paging_markdown() -> str:
    data = paging_vectors()
    out = [
        f"Task table (slot: task), gateway `max_frame` {data['max_frame']}:\n",
        "```",
    ]
    for slot, info in enumerate(data["table"]):
        out.append(f"{slot}: {json.dumps(info, ensure_ascii=False) if info else '(free)'}")
    out.append("```\n")
    for page in data["pages"]:
        request, reply = dict(page["request"]), dict(page["reply"])
        request.pop("type")
        reply.pop("type")
        frame = page["reply_frame"]
        out.append(f"gateway → ListTasks {json.dumps(request)}\n")
        out.append(f"```\npayload: {_hexdump(page['request_frame']['payload_hex'])}\n```\n")
        out.append(
            f"device → TaskList ({len(frame['raw_hex']) // 2}-byte frame) "
            f"{json.dumps(reply, ensure_ascii=False)}\n"
        )
        out.append(f"```\npayload: {_hexdump(frame['payload_hex'])}\n```\n")
    return "\n".join(out)


def _codec_text(codec: Codec[Any]) -> str:  # noqa: PLR0912 (one branch per codec kind)
    """A short human description of a field codec for the catalogue tables."""
    if isinstance(codec, FrameLimit):
        return f"uint {MIN_FRAME}..{MAX_FRAME_CEILING}"
    if isinstance(codec, WindowSize):
        return f"uint 1..{MAX_WINDOW}"
    if isinstance(codec, NonZeroU32):
        return "uint32, non-zero"
    if isinstance(codec, EnumCodec):
        return "uint: " + ", ".join(f"{m.value}={m.name.lower()}" for m in codec.enum)
    if isinstance(codec, UInt):
        return {255: "uint8", 0xFFFF: "uint16", 2**32 - 1: "uint32", 2**64 - 1: "uint64"}.get(
            codec.maximum, f"uint 0..{codec.maximum}"
        )
    if isinstance(codec, SInt):
        return "int64"
    if isinstance(codec, Bool):
        return "bool"
    if isinstance(codec, Str):
        return f"str ≤{codec.max_bytes} B" + ("" if codec.allow_empty else ", non-empty")
    if isinstance(codec, Bin):
        return "bin (frame-bounded)"
    if isinstance(codec, Seq):
        return f"array[{codec.min_items}..{codec.max_items}] of {_codec_text(codec.item)}"
    if isinstance(codec, StrPairs):
        return f"map ≤{codec.max_items} of {_codec_text(codec.key)} → {_codec_text(codec.value)}"
    if isinstance(codec, Optional):
        return f"nil or {_codec_text(codec.inner)}"
    if isinstance(codec, Nested):
        return f"map {codec.cls.__name__}"
    return type(codec).__name__


def _struct_table(cls: type[WireStruct]) -> str:
    rows = ["| key | field | type | required |", "|---|---|---|---|"]
    for spec in wire_specs(cls):
        need = "yes" if spec.required else "no"
        rows.append(f"| {spec.key} | `{spec.name}` | {_codec_text(spec.codec)} | {need} |")
    if len(rows) == 2:
        rows.append("| | (empty map) | | |")
    return "\n".join(rows)


def catalogue_markdown() -> str:
    out = []
    for msg_type, cls in sorted(MESSAGE_CLASSES.items()):
        senders = " / ".join(sorted(r.value for r in cls.SENDERS))
        kind = "sequenced" if cls.SEQUENCED else "unsequenced"
        name = MessageType(msg_type).name
        out.append(f"#### 0x{msg_type:02x} {name} ({kind}; sent by {senders})")
        out.append("")
        out.append(_struct_table(cls))
        out.append("")
    nested: tuple[type[WireStruct], ...] = (Load, TaskLoad, TaskInfo)
    for struct in nested:
        out.append(f"#### {struct.__name__} (nested map)")
        out.append("")
        out.append(_struct_table(struct))
        out.append("")
    return "\n".join(out)


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text:
        return text
    start = text.index(begin) + len(begin)
    stop = text.index(end)
    return text[:start] + "\n" + body + "\n" + text[stop:]


def render_spec(spec_text: str) -> str:
    text = _replace_block(spec_text, BEGIN, END, example_markdown())
    text = _replace_block(text, BEGIN_PAGING, END_PAGING, paging_markdown())
    return _replace_block(text, BEGIN_CATALOGUE, END_CATALOGUE, catalogue_markdown())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if files are out of date")
    args = parser.parse_args(argv)
    stale = []
    wanted = {VECTORS / name: text for name, text in generate().items()}
    if SPEC.exists() and BEGIN in SPEC.read_text():
        wanted[SPEC] = render_spec(SPEC.read_text())
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
