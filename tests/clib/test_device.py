"""The C device end to end at frame level: the worked exchange byte for byte, the golden payloads
produced by the real code paths (TASK_LIST, EXEC_RESULT, TASK_EXITED, DEVICE_LOG), request
handling and its errors, heartbeats with load, task-list paging, frame limits, link loss."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from firmware_protocol import (
    FEATURE_TASK_HANDLES,
    Error,
    ErrorCode,
    Exec,
    ExecOutput,
    ExecResult,
    Frame,
    FrameFlags,
    Hello,
    HelloRequest,
    ListTasks,
    OutputStream,
    Ping,
    Pong,
    StartTask,
    StopTask,
    TaskData,
    TaskExited,
    TaskList,
    TaskOutput,
    TaskStarted,
    Welcome,
    parse,
)
from firmware_protocol.constants import FRAME_OVERHEAD, MIN_FRAME
from firmware_protocol.messages import request_id_of
from firmware_protocol.vectors_gen import VECTORS

from .clib import CDevice, Identity, Library
from .gateway_script import SESSION, ScriptedGateway


def vectors(name: str) -> dict[str, Any]:
    data = json.loads((VECTORS / name).read_text())
    assert isinstance(data, dict)
    return data


def message_vector(name: str) -> dict[str, Any]:
    (vector,) = [v for v in vectors("messages.json")["vectors"] if v["name"] == name]
    assert isinstance(vector, dict)
    return vector


EXCHANGE_IDENTITY = Identity(
    device_id="e6614103e7a1b22c",
    firmware_name="wirelet-fw",
    firmware_version="0.3.1",
    arch="armv6m",
    vendor="Raspberry Pi",
    product="Pico",
    serial="E6614103E7A1B22C",
    memory_total=65536,
)


def test_worked_exchange_byte_for_byte(library: Library) -> None:
    """PROTOCOL.md section 14: the C device sends exactly the reference device's bytes."""
    exchange = vectors("exchanges.json")
    frames = exchange["handshake"] + exchange["start_output_exit"]
    device = CDevice(library, apps="blink,echo=argecho", identity=EXCHANGE_IDENTITY)
    sent = device.data_to_send()
    for frame in frames:
        wire = bytes.fromhex(frame["wire_hex"])
        if frame["from"] == "device":
            assert sent[: len(wire)].hex() == wire.hex()
            sent = sent[len(wire) :]
        else:
            device.feed(wire, 0.001)
            sent += device.data_to_send()
            device.poll(0.002)
            sent += device.data_to_send()
    assert sent == b""
    assert device.pending == 0  # the gateway's final ACK released everything


@pytest.fixture
def device(library: Library) -> CDevice:
    return CDevice(
        library,
        apps="blink,echo=argecho,rec,lines,refuse,nostop,stubborn",
        identity=EXCHANGE_IDENTITY,
        exec_kind=2,
    )


@pytest.fixture
def gw(device: CDevice) -> ScriptedGateway:
    gateway = ScriptedGateway(device)
    (hello,) = gateway.take()
    assert isinstance(parse(hello), Hello)
    assert gateway.welcome() == []
    assert device.is_up
    return gateway


def payload_of(frames: list[Frame], msg_type: int) -> bytes:
    (frame,) = [f for f in frames if f.type == msg_type]
    return frame.payload


def test_golden_payloads_from_the_real_code_paths(device: CDevice, gw: ScriptedGateway) -> None:
    gw.send(StartTask(1, "pod-1/blink", "blink", argv=("blink", "128")))
    gw.send(StartTask(2, "pod-1/echo", "echo", argv=("hello",)))
    gw.poll(0.01)
    out = gw.send(ListTasks(3))
    assert payload_of(out, 0x23).hex() == message_vector("task_list")["frame"]["payload_hex"]
    out = gw.send(Exec(4, ("cat", "/proc/meminfo"), 5000, "pod-1/blink"))
    assert payload_of(out, 0x24).hex() == message_vector("exec_result")["frame"]["payload_hex"]
    out = gw.send(StopTask(2, "pod-1/blink", 30000))
    want = message_vector("task_exited_stopped")["frame"]["payload_hex"]
    assert payload_of(out, 0x21).hex() == want


def test_device_log_carries_text_and_uptime(library: Library) -> None:
    device = CDevice(library, identity=EXCHANGE_IDENTITY, now=123.0)
    gw = ScriptedGateway(device, now=123.0)
    gw.take()
    gw.welcome()
    device.set_time(123.456)
    assert device.log(2, "heap low: 1.2 kB frei ✓")
    out = gw.poll(123.456)
    assert payload_of(out, 0x25).hex() == message_vector("device_log")["frame"]["payload_hex"]


def test_start_is_idempotent_while_the_task_runs(device: CDevice, gw: ScriptedGateway) -> None:
    gw.send(StartTask(1, "t", "blink", argv=("blink", "10")))
    gw.poll(0.01)
    gw.send(StartTask(2, "t", "blink", argv=("blink", "10")))
    gw.poll(0.02)
    messages = [parse(f) for f in gw.frames if f.sequenced]
    assert [m.request_id for m in messages if isinstance(m, TaskStarted)] == [1, 2]
    output = b"".join(m.data for m in messages if isinstance(m, TaskOutput))
    assert output == b"x" * 10  # started once


def test_a_finished_task_id_may_be_reused(device: CDevice, gw: ScriptedGateway) -> None:
    gw.send(StartTask(1, "t", "rec", argv=("first",)))
    gw.send(StartTask(2, "t", "rec", argv=("second",)))
    assert device.rec_log == ["first", "second"]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (StartTask(7, "t", "nginx"), ErrorCode.NO_SUCH_APP),
        (StopTask(7, "ghost", 0), ErrorCode.NO_SUCH_TASK),
        (StartTask(7, "t", "refuse"), ErrorCode.TOO_LARGE),  # start() refused
        (StartTask(7, "t", "rec", argv=tuple("abcdefghijklmnopq")), ErrorCode.TOO_LARGE),
    ],
    ids=["no-app", "no-task", "app-refuses", "argv-beyond-device-limit"],
)
def test_requests_that_fail_get_error_with_their_request_id(
    gw: ScriptedGateway, request_: StartTask | StopTask, code: ErrorCode
) -> None:
    out = gw.send(request_)
    messages = [parse(f) for f in out if f.sequenced]
    assert len(messages) == 1, messages  # nothing else, e.g. no TASK_STARTED or output
    (error,) = messages
    assert isinstance(error, Error)
    assert (error.request_id, error.code, error.msg_type) == (7, code, request_.TYPE)


def test_all_slots_busy_is_no_slots(gw: ScriptedGateway) -> None:
    for i in range(4):
        gw.send(StartTask(i + 1, f"t{i}", "nostop"))
    (error,) = [parse(f) for f in gw.send(StartTask(9, "t9", "nostop")) if f.sequenced]
    assert isinstance(error, Error) and error.code == ErrorCode.NO_SLOTS


def test_invalid_frames_are_acked_and_answered(gw: ScriptedGateway) -> None:
    invalid = {v["name"]: v for v in vectors("invalid_messages.json")["vectors"]}
    cases = [("unknown_type", ErrorCode.UNSUPPORTED), ("task_id_too_long", ErrorCode.MALFORMED)]
    for name, code in cases:
        f = invalid[name]["frame"]
        payload = bytes.fromhex(f["payload_hex"])
        request_id = request_id_of(payload)
        out = gw.send(msg_type=f["type"], payload=payload)
        (error,) = [parse(x) for x in out if x.sequenced]
        assert isinstance(error, Error)
        assert (error.code, error.request_id, error.msg_type) == (code, request_id, f["type"])
        assert code != ErrorCode.MALFORMED or "task_id" in error.message
    # A device message from the gateway: wrong direction.
    out = gw.send(msg_type=0x20, payload=TaskStarted(5, "t").to_bytes())
    (error,) = [parse(x) for x in out if x.sequenced]
    assert isinstance(error, Error) and error.code == ErrorCode.WRONG_DIRECTION
    assert error.request_id == 5
    # An ERROR is never answered with an ERROR, but its seq is consumed and acknowledged.
    out = gw.send(msg_type=0x30, payload=b"\xc1")
    assert [f.type for f in out] == [0x05]
    assert out[0].ack == gw.seq


def test_duplicates_are_not_delivered_again_and_gaps_are_reported(
    device: CDevice, gw: ScriptedGateway
) -> None:
    start = StartTask(1, "t", "rec", argv=("once",))
    gw.send(start)
    frame = Frame(1, start.TYPE, FrameFlags.SEQ | FrameFlags.ACK, 0, 0, start.to_bytes())
    out = gw.feed_frame(frame)  # the same seq again
    assert device.rec_log == ["once"]
    assert [(f.type, f.ack) for f in out] == [(0x05, 1)]  # re-acked: the gateway missed our ack
    gap = Frame(1, start.TYPE, FrameFlags.SEQ | FrameFlags.ACK, 5, 0, start.to_bytes())
    out = gw.feed_frame(gap)
    assert [(f.type, f.ack) for f in out] == [(0x05, 1)]  # gap report, nothing delivered
    assert device.rec_log == ["once"]
    assert device.stats["duplicates"] == 1 and device.stats["out_of_order"] == 1


def test_ping_is_answered_with_load(device: CDevice, gw: ScriptedGateway) -> None:
    gw.send(StartTask(1, "pod-1/blink", "blink"))
    ping = Ping(77)
    out = gw.feed_frame(Frame(1, ping.TYPE, FrameFlags.ACK, 0, 1, ping.to_bytes()))
    (pong,) = [parse(f) for f in out if f.type == Pong.TYPE]
    assert isinstance(pong, Pong) and pong.nonce == 77 and pong.load is not None
    assert pong.load.mem_used > 0
    assert [t.task_id for t in pong.load.tasks] == ["pod-1/blink"]


def test_stop_reports_stopped_or_killed_after_grace(device: CDevice, gw: ScriptedGateway) -> None:
    gw.send(StartTask(1, "a", "nostop"))
    gw.send(StartTask(2, "b", "stubborn"))
    (exited,) = [parse(f) for f in gw.send(StopTask(3, "a", 1000)) if f.sequenced]
    assert isinstance(exited, TaskExited)
    assert (exited.request_id, exited.exit_code, exited.reason) == (3, 143, "stopped")
    assert not [f for f in gw.send(StopTask(4, "b", 500)) if f.type == 0x21]
    assert not [f for f in gw.poll(0.4) if f.type == 0x21]
    (killed,) = [parse(f) for f in gw.poll(0.6) if f.type == 0x21]
    assert isinstance(killed, TaskExited)
    assert (killed.request_id, killed.exit_code, killed.reason) == (4, 137, "killed")
    # STOP of a task already over repeats its report for the new request.
    (again,) = [parse(f) for f in gw.send(StopTask(5, "b", 0)) if f.sequenced]
    assert isinstance(again, TaskExited) and again.request_id == 5 and again.exit_code == 137


def test_task_list_pages_fit_the_gateway_frame(library: Library) -> None:
    """LIST_TASKS key 1 `cursor`, TASK_LIST key 2 `next_cursor`: a page is what fits a frame."""
    device = CDevice(library, apps="nostop")
    gw = ScriptedGateway(device)
    gw.take()
    limit = max(MIN_FRAME, 192)
    gw.welcome(max_frame=limit)
    ids = [f"{i}" * 48 for i in range(4)]  # maximal task ids
    for i, task_id in enumerate(ids):
        gw.send(StartTask(i + 1, task_id, "nostop"))
    seen: list[str] = []
    cursor, pages = 0, 0
    while True:
        request = msgpack.packb({0: 100 + pages, 1: cursor} if cursor else {0: 100 + pages})
        out = gw.send(msg_type=ListTasks.TYPE, payload=request)
        (frame,) = [f for f in out if f.type == TaskList.TYPE]
        assert len(frame.raw()) <= limit
        page = msgpack.unpackb(frame.payload, strict_map_key=False)
        assert page[0] == 100 + pages and page[1]
        seen += [t[1] for t in page[1]]
        pages += 1
        if 2 not in page:
            break
        assert page[2] > cursor
        cursor = page[2]
    assert seen == ids and pages > 1


def test_output_frames_fit_the_gateway_max_frame(library: Library) -> None:
    device = CDevice(library, apps="flood")
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome(max_frame=192, window=8)
    gw.send(StartTask(1, "f", "flood", argv=("3000",)))
    data = b""
    for step in range(200):
        gw.poll(0.001 * step)
        gw.ack()
        data = b"".join(m.data for m in map(parse, gw.frames) if isinstance(m, TaskOutput))
        if len(data) == 3000:
            break
    assert all(len(f.raw()) <= 192 for f in gw.frames)
    assert data == b"".join(b"%015d\n" % k for k in range(188))[:3000]


def test_hello_request_while_up_restarts_the_handshake(
    device: CDevice, gw: ScriptedGateway
) -> None:
    request = HelloRequest()
    out = gw.feed_frame(Frame(1, request.TYPE, FrameFlags.NONE, 0, 0, request.to_bytes()))
    (hello,) = [parse(f) for f in out]
    assert isinstance(hello, Hello)
    assert hello.attempt == 2 and hello.last_session == 0x5E55104E
    assert not device.is_up
    assert device.stats["link_losses"] == 1


def test_silence_loses_the_link_and_hello_backs_off(device: CDevice, gw: ScriptedGateway) -> None:
    times = []
    for ms in range(0, 20000, 50):
        out = gw.poll(ms / 1000)
        times += [ms for f in out if f.type == Hello.TYPE]
    assert device.stats["link_losses"] == 1
    assert times[0] == 6000  # link_lost_ms from the WELCOME
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[:3] == [500, 1000, 2000] and max(gaps) == 2000


def test_ram_fits_the_default_budget(library: Library) -> None:
    # The host build has 8-byte pointers; MCU builds are smaller (see test_ram.py).
    assert library.sizeof_device <= 4096


def test_exec_output_beyond_a_frame_is_cut_and_flagged(library: Library) -> None:
    device = CDevice(library, apps="rec", exec_kind=3)
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome(max_frame=256)
    (frame,) = [f for f in gw.send(Exec(9, ("big",))) if f.type == ExecResult.TYPE]
    assert len(frame.raw()) <= 256
    result = parse(frame)
    assert isinstance(result, ExecResult)
    assert (result.request_id, result.exit_code, result.truncated) == (9, 3, True)
    assert result.stdout == b"o" * len(result.stdout) and len(result.stdout) > 50
    assert result.stderr == b"e" * len(result.stderr) and len(result.stderr) > 50


def test_exec_without_a_handler_is_unsupported(library: Library) -> None:
    device = CDevice(library, apps="rec", exec_kind=0)
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome()
    (error,) = [parse(f) for f in gw.send(Exec(9, ("ls",))) if f.sequenced]
    assert isinstance(error, Error) and error.code == ErrorCode.UNSUPPORTED


def test_restart_link_resumes_and_resends_unacked(device: CDevice, gw: ScriptedGateway) -> None:
    gw.send(StartTask(1, "t", "blink", argv=("blink", "5")))
    gw.poll(0.01)  # output goes out, the test gateway does not acknowledge it
    unacked = [f for f in gw.frames if f.sequenced]
    device.restart_link()
    (hello,) = [parse(f) for f in gw.take()]
    assert isinstance(hello, Hello)
    assert (hello.attempt, hello.last_session) == (2, 0x5E55104E)
    resume = Welcome(1, 0x5E55104E, 1024, 8, True, 2000, 6000, 2)
    out = gw.feed_frame(Frame(1, resume.TYPE, FrameFlags.NONE, 0, 0, resume.to_bytes()))
    assert [(f.seq, f.payload) for f in out if f.sequenced] == [
        (f.seq, f.payload) for f in unacked
    ]  # the same frames, same numbers: a resume
    assert device.stats["peer_resets"] == 0


def test_exec_in_an_unknown_task_is_no_such_task(gw: ScriptedGateway) -> None:
    (error,) = [parse(f) for f in gw.send(Exec(9, ("ls",), 1000, "ghost")) if f.sequenced]
    assert isinstance(error, Error)
    assert (error.request_id, error.code, error.msg_type) == (9, ErrorCode.NO_SUCH_TASK, Exec.TYPE)


def test_output_beyond_the_buffer_waits_for_acks_and_loses_nothing(
    device: CDevice, gw: ScriptedGateway
) -> None:
    """Without acks the task fills the device's buffer and is blocked (not stepped, idle);
    each ack frees room and it continues; every byte arrives once, in order, then the exit."""
    gw.send(StartTask(1, "t", "lines", argv=("lines", "600")))
    for step in range(20):
        gw.poll(0.01 * (step + 1))  # no acks: the window fills, then the buffer
    assert device.pending > device.inflight > 0
    stalled = len(gw.frames)
    gw.poll(0.4)  # before the retransmission timer (500 ms after TASK_STARTED)
    assert len(gw.frames) == stalled  # blocked: no busy stepping, nothing new
    assert device.next_deadline() == pytest.approx(0.5)  # idle until the timer, not 0
    data = b""
    exited: TaskExited | None = None
    for step in range(2000):
        gw.ack()
        gw.poll(1.0 + step * 0.001)
        messages = [parse(f) for f in gw.frames if f.sequenced]
        data = b"".join(m.data for m in messages if isinstance(m, TaskOutput))
        exits = [m for m in messages if isinstance(m, TaskExited)]
        if exits:
            exited = exits[0]
            break
    offsets = [m.offset for m in map(parse, gw.frames) if isinstance(m, TaskOutput)]
    assert offsets == sorted(set(offsets))  # each chunk once, in order
    assert data == b"".join(b"line %05d\n" % i for i in range(600))
    assert exited is not None and exited.stdout_end == len(data)


def _output_by_handle(gw: ScriptedGateway, frames: list[Frame]) -> list[TaskOutput]:
    """TASK_OUTPUT and TASK_DATA frames as a gateway link resolves them (checking that every
    handle was bound by an earlier frame)."""
    bound: dict[int, str] = {}
    out = []
    for message in (parse(f) for f in frames if f.sequenced):
        if isinstance(message, TaskOutput):
            if message.handle is not None:
                bound[message.handle] = message.task_id
            out.append(replace(message, handle=None))
        elif isinstance(message, TaskData):
            assert message.handle in bound, "TASK_DATA before its binding"
            out.append(
                TaskOutput(bound[message.handle], message.stream, message.offset, message.data)
            )
    return out


def test_output_goes_by_handle_once_bound_and_is_bound_again_for_a_new_gateway(
    library: Library,
) -> None:
    """With TASK_HANDLES in WELCOME the first frame binds the task's slot as its handle and
    the rest are TASK_DATA; a new gateway session (fresh start) gets a binding first again."""
    device = CDevice(library, apps="lines")
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome(max_frame=256, features=FEATURE_TASK_HANDLES)
    gw.send(StartTask(1, "0b5e1c2a-7d3f-4e6b-9a1c-2f4d6e8a0b1c/0/0", "lines", ("lines", "300")))
    for step in range(400):
        gw.ack()
        gw.poll(0.01 + step * 0.001)
    frames = [f for f in gw.frames if f.type in (TaskOutput.TYPE, TaskData.TYPE)]
    assert [f.type for f in frames[:2]] == [TaskOutput.TYPE, TaskData.TYPE]
    # Only the first (and its retransmissions: same seq) names the task.
    assert {f.seq for f in frames if f.type == TaskOutput.TYPE} == {frames[0].seq}
    assert max(len(f.raw()) for f in frames) <= 256
    got = _output_by_handle(gw, gw.frames)
    assert b"".join(m.data for m in got) == b"".join(b"line %05d\n" % i for i in range(300))
    assert [m.offset for m in got] == sorted({m.offset for m in got})

    # Output sent by handle and never acknowledged is kept for the next gateway; that one
    # starts a fresh sequence space and knows no handle, so the device binds again first.
    gw.send(StartTask(2, "pod-2/lines", "lines", ("lines", "50")))
    for step in range(5):
        gw.poll(1.0 + step * 0.001)
    assert TaskData.TYPE in [f.type for f in gw.take() + gw.frames[-3:]]
    gw2 = ScriptedGateway(device)
    gw2.welcome(max_frame=256, features=FEATURE_TASK_HANDLES, session=SESSION + 1)
    for step in range(200):
        gw2.ack()
        gw2.poll(2.0 + step * 0.001)
    again = [f for f in gw2.frames if f.type in (TaskOutput.TYPE, TaskData.TYPE)]
    assert again[0].type == TaskOutput.TYPE
    assert TaskOutput.from_bytes(again[0].payload).handle is not None
    got = _output_by_handle(gw2, gw2.frames)
    assert b"".join(m.data for m in got) == b"".join(b"line %05d\n" % i for i in range(50))


def frame_size(message: ExecOutput) -> int:
    return len(message.to_bytes()) + FRAME_OVERHEAD


def _streamed_exec(gw: ScriptedGateway, request: Exec) -> tuple[list[ExecOutput], ExecResult]:
    """Send a streamed EXEC and acknowledge until its EXEC_RESULT has come."""
    messages = [parse(f) for f in gw.send(request) if f.sequenced]
    for _ in range(200):
        if any(isinstance(m, ExecResult) for m in messages):
            break
        messages += [parse(f) for f in gw.ack() if f.sequenced]
        messages += [parse(f) for f in gw.poll() if f.sequenced]
    pieces = [m for m in messages if isinstance(m, ExecOutput)]
    (result,) = [m for m in messages if isinstance(m, ExecResult)]
    return pieces, result


def test_streamed_exec_output_spans_frames_and_ends_with_the_stream_lengths(
    library: Library,
) -> None:
    device = CDevice(library, apps="rec", exec_kind=1)
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome(max_frame=256)
    pieces, result = _streamed_exec(gw, Exec(9, ("seq", "300"), stream=True))
    expected = "".join(f"{n}\n" for n in range(1, 301)).encode()
    assert len(pieces) > 1 and all(p.request_id == 9 for p in pieces)
    offset = 0
    for piece in pieces:  # consecutive offsets, each within the gateway's frame
        assert piece.stream == OutputStream.STDOUT and piece.offset == offset
        assert frame_size(piece) <= 256
        offset += len(piece.data)
    assert b"".join(p.data for p in pieces) == expected
    assert (result.exit_code, result.stdout, result.truncated) == (0, b"", False)
    assert (result.stdout_end, result.stderr_end) == (len(expected), 0)


def test_streamed_exec_beyond_the_transmit_buffer_is_cut_and_flagged(library: Library) -> None:
    """The C library runs exec synchronously: what the transmit buffer holds is what it sends;
    the result says so and its ends count exactly what was sent."""
    device = CDevice(library, apps="rec", exec_kind=1)
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome()
    pieces, result = _streamed_exec(gw, Exec(9, ("seq", "5000"), stream=True))
    sent = b"".join(p.data for p in pieces)
    assert len(sent) > 512 and "".join(f"{n}\n" for n in range(1, 5001)).encode().startswith(sent)
    assert result.truncated and result.stdout_end == len(sent)


def test_exec_without_stream_still_answers_in_one_frame(library: Library) -> None:
    device = CDevice(library, apps="rec", exec_kind=1)
    gw = ScriptedGateway(device)
    gw.take()
    gw.welcome(max_frame=256)
    (frame,) = [f for f in gw.send(Exec(9, ("seq", "300"))) if f.sequenced]
    result = parse(frame)
    assert isinstance(result, ExecResult) and result.truncated and result.stdout_end is None
