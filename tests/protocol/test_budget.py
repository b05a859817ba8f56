"""Frame budgets: every message a sender builds with the `budget` helpers fits the peer's frame,
whatever the number of tasks or the length of a text; task-list paging covers every task."""

from __future__ import annotations

import dataclasses
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol import (
    MAX_FRAME_CEILING,
    MAX_TASK_INFO_SIZE,
    MIN_FRAME,
    TASK_LIST_ENVELOPE,
    DeviceLog,
    Error,
    ErrorCode,
    ExecResult,
    Frame,
    FrameFlags,
    HeartbeatAnswered,
    ListTasks,
    Load,
    MessageReceived,
    MessageRejected,
    OutputStream,
    Pong,
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
    fit_load,
    max_output_data,
    refit,
    task_info_size,
    task_infos_that_fit,
    task_list_page,
)
from firmware_protocol.constants import FRAME_OVERHEAD

from .simnet import LossyChannel, Simulation
from .test_link import CONFIG, Recorder, _reply_of, device_link, gateway_link

U32 = 2**32 - 1
U64 = 2**64 - 1
I64_MIN = -(2**63)
LONGEST_ID = "x" * 48
LONGEST_APP = "a" * 32
MAXIMAL_INFO = TaskInfo(LONGEST_ID, LONGEST_APP, False, I64_MIN, U64, U64)


def frame_size(message: object) -> int:
    return len(message.to_bytes()) + FRAME_OVERHEAD  # type: ignore[attr-defined]


def test_every_bounded_message_fits_the_smallest_frame() -> None:
    """MIN_FRAME was raised from 128 so that these fit: a device may declare the minimum."""
    assert task_info_size(MAXIMAL_INFO) == MAX_TASK_INFO_SIZE
    assert TASK_LIST_ENVELOPE + MAX_TASK_INFO_SIZE <= MIN_FRAME
    bounded = [
        TaskExited(U32, LONGEST_ID, I64_MIN, "r" * 64, U64, U64),
        TaskStarted(U32, LONGEST_ID),
        TaskList(U32, (MAXIMAL_INFO,), next_cursor=U32),
        StopTask(U32, LONGEST_ID, U32),
        ListTasks(U32, U32),
        TaskOutput(LONGEST_ID, OutputStream.STDERR, U64, b"x"),
        Pong(U32, Load(U32, 1000, (TaskLoad(LONGEST_ID, 1000, U32),))),
        fit_error(Error(U32, 0xFFFF, "e" * 255, 255), MIN_FRAME),
        fit_device_log(DeviceLog(255, "l" * 255, U64), MIN_FRAME),
        fit_exec_result(ExecResult(U32, I64_MIN, b"o" * 4000, b"e" * 4000, False), MIN_FRAME),
    ]
    for message in bounded:
        assert frame_size(message) <= MIN_FRAME, type(message).__name__


@pytest.mark.parametrize("task_id_len", [1, 31, 32, 47, 48])
@pytest.mark.parametrize("offset", [0, 127, 255, 65535, 2**32 - 1, 2**32, U64])
def test_max_output_data_is_exact(task_id_len: int, offset: int) -> None:
    task_id = "t" * task_id_len
    frames = [*range(MIN_FRAME, 300), *range(500, 530), 4096]
    for max_frame in frames:
        n = max_output_data(max_frame, task_id_len, offset=offset)
        assert n >= 1
        fits = TaskOutput(task_id, OutputStream.STDOUT, offset, bytes(n))
        assert frame_size(fits) <= max_frame, (max_frame, n)
        bigger = TaskOutput(task_id, OutputStream.STDOUT, offset, bytes(n + 1))
        assert frame_size(bigger) > max_frame, (max_frame, n)


def test_max_output_data_default_is_safe_for_every_offset() -> None:
    n = max_output_data(512, 40)
    for offset in (0, 1, 300, 70000, 2**40, U64):
        assert frame_size(TaskOutput("i" * 40, OutputStream.STDERR, offset, bytes(n))) <= 512
    with pytest.raises(ValueError, match="task id length"):
        max_output_data(512, 49)


infos = st.builds(
    TaskInfo,
    task_id=st.text(alphabet="abcdefé/-0123456789", min_size=1, max_size=24),
    app=st.sampled_from(["blink", "echo", LONGEST_APP]),
    running=st.booleans(),
    exit_code=st.one_of(st.none(), st.integers(I64_MIN, 2**63 - 1)),
    stdout_end=st.integers(0, U64),
    stderr_end=st.integers(0, U64),
)


@settings(max_examples=200, deadline=None)
@given(
    table=st.lists(st.one_of(st.none(), infos), max_size=300),
    max_frame=st.integers(MIN_FRAME, 1024),
)
def test_paging_returns_every_task_in_frames_that_fit(
    table: list[TaskInfo | None], max_frame: int
) -> None:
    entries = [(slot, info) for slot, info in enumerate(table) if info is not None]
    seen: list[TaskInfo] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page = task_list_page(U32, entries, cursor, max_frame)
        assert frame_size(page) <= max_frame
        if page.next_cursor is not None:
            assert page.next_cursor > cursor
            assert page.tasks, "a page with more to come carries at least one task"
        seen += page.tasks
        cursor = page.next_cursor
        pages += 1
        assert pages <= len(entries) + 1
    assert seen == [info for _, info in entries]


def test_task_infos_that_fit_is_as_many_as_fit() -> None:
    rng = random.Random(4)
    for _ in range(200):
        many = [
            TaskInfo(
                "t" * rng.randint(1, 48), "blink", rng.random() < 0.5, None, rng.randint(0, U64)
            )
            for _ in range(rng.randint(1, 60))
        ]
        max_frame = rng.randint(MIN_FRAME, MAX_FRAME_CEILING)
        n = task_infos_that_fit(max_frame, many)
        assert n >= 1
        assert frame_size(TaskList(U32, tuple(many[:n]), next_cursor=U32)) <= max_frame
        if n < len(many):
            # One more would not fit (the envelope is counted at its worst: an array16
            # header, 2 bytes more than a short list's, may go unused).
            over = TaskList(U32, tuple(many[: n + 1]), next_cursor=U32)
            assert frame_size(over) > max_frame - 2


def test_fit_load_keeps_the_first_task_figures_that_fit() -> None:
    tasks = tuple(TaskLoad(f"{i:040d}", 1000, U32) for i in range(255))
    load = Load(U32, 1000, tasks)
    for max_frame in (MIN_FRAME, 256, 512, 4096):
        fitted = fit_load(load, max_frame)
        assert frame_size(Pong(U32, fitted)) <= max_frame
        assert fitted.tasks == tasks[: len(fitted.tasks)]
        assert (fitted.mem_used, fitted.cpu_permille) == (U32, 1000)
        assert len(fitted.tasks) >= 1
    small = Load(10, 5, tasks[:2])
    assert fit_load(small, 512) is small


def test_fit_text_cuts_at_a_character_boundary() -> None:
    text = "ünïcödé ✓ " * 40  # 2- and 3-byte characters, far over 255 bytes
    for max_frame in range(MIN_FRAME, 300):
        error = fit_error(Error(U32, ErrorCode.INTERNAL, text[:100], 0x10), max_frame)
        assert frame_size(error) <= max_frame
        assert text.startswith(error.message)
        assert Error.from_bytes(error.to_bytes()) == error
        log = fit_device_log(DeviceLog(2, text[:120], U64), max_frame)
        assert frame_size(log) <= max_frame
        assert text.startswith(log.text)
    short = Error(1, ErrorCode.BUSY, "busy", 0x13)
    assert fit_error(short, MIN_FRAME) is short


def test_fit_exec_result_cuts_stderr_then_stdout() -> None:
    result = ExecResult(1, 0, b"o" * 100, b"e" * 300)
    fitted = fit_exec_result(result, 256)
    assert frame_size(fitted) <= 256 and fitted.truncated
    assert fitted.stdout == b"o" * 100 and fitted.stderr == b"e" * len(fitted.stderr)
    fitted = fit_exec_result(ExecResult(1, 0, b"o" * 1000, b"e" * 10), MIN_FRAME)
    assert frame_size(fitted) <= MIN_FRAME and fitted.stderr == b"" and fitted.truncated
    assert ExecResult.from_bytes(fitted.to_bytes()) == fitted


def small_gateway_sim() -> tuple[Simulation, Recorder]:
    """A device and a gateway that declares the smallest frame allowed, both up."""
    rng = random.Random(11)
    rec = Recorder()
    small_gateway = gateway_link(config=dataclasses.replace(CONFIG, max_frame=MIN_FRAME))
    sim = Simulation(small_gateway, device_link(), LossyChannel(rng), LossyChannel(rng), rec)
    sim.start()
    sim.run_until(0.5)
    assert sim.gateway.is_up and sim.device.is_up
    return sim, rec


def test_device_pong_carries_only_the_task_figures_that_fit_the_gateway_frame() -> None:
    sim, rec = small_gateway_sim()
    tasks = tuple(TaskLoad(f"{i:040d}", 10, 4096) for i in range(255))
    sim.device.set_load(Load(1 << 20, 500, tasks))
    sim.run_until(5.0)
    beats = [b for b in rec.of("gateway", HeartbeatAnswered) if b.load is not None]
    assert beats, "PONGs with a load must reach a gateway with the smallest frame"
    load = beats[-1].load
    assert load is not None and 1 <= len(load.tasks) < 255
    assert load.tasks == tasks[: len(load.tasks)]


def test_link_error_replies_fit_the_peer_frame() -> None:
    """A device rejecting a request whose field error quotes a long, non-ASCII env key."""
    sim, _ = small_gateway_sim()
    device = sim.device
    device.data_to_send()
    key = "ключ" * 60  # 480 bytes of UTF-8: the error text quoting it is far over 255
    payload = msgpack.packb({0: 9, 1: "t", 2: "blink", 4: {key: "v"}})
    frame = Frame(1, 0x10, FrameFlags.SEQ | FrameFlags.ACK, 0, 0, payload)
    device.receive_data(frame.to_bytes(), 1.0)
    (reply,) = [m for m in _reply_of(device) if isinstance(m, Error)]
    assert reply.request_id == 9 and reply.code == ErrorCode.MALFORMED
    assert "StartTask.env" in reply.message
    assert len(reply.message.encode()) <= 255
    assert device.send_limit == MIN_FRAME  # the gateway's declared max_frame
    assert frame_size(reply) <= MIN_FRAME


def test_output_queued_for_a_larger_frame_is_split_for_a_smaller_new_gateway() -> None:
    """A gateway restarts with a smaller max_frame: the output the device kept for the old one
    (renumbered into the new session) is split to fit, not dropped."""
    rng = random.Random(12)
    rec = Recorder()
    big = gateway_link(config=dataclasses.replace(CONFIG, max_frame=1024))
    sim = Simulation(big, device_link(), LossyChannel(rng), LossyChannel(rng), rec)
    sim.start()
    sim.run_until(0.5)
    data = bytes(range(256)) * 3 + b"tail"
    kept = TaskOutput(LONGEST_ID, OutputStream.STDOUT, 1000, data)
    sim.device.send(kept, sim.now)  # goes out to the old gateway, which dies before acking
    assert frame_size(kept) > MIN_FRAME and sim.device.unacked == 1

    small = gateway_link(session_id=200, config=dataclasses.replace(CONFIG, max_frame=MIN_FRAME))
    seen_before = len(rec.events["gateway"])
    sim.replace_gateway(small)
    sim.run_until(5.0, stop=lambda: sim.device.unacked + sim.device.queued == 0)
    parts = [
        e.message
        for _, e in rec.events["gateway"][seen_before:]
        if isinstance(e, MessageReceived) and isinstance(e.message, TaskOutput)
    ]
    assert len(parts) > 1 and b"".join(p.data for p in parts) == data
    ends = [p.offset + len(p.data) for p in parts]
    assert [p.offset for p in parts] == [1000, *ends[:-1]]  # consecutive, nothing lost
    assert all(frame_size(p) <= MIN_FRAME for p in parts)
    assert not rec.of("device", MessageRejected)


def test_refit_cuts_texts_and_gives_up_on_what_cannot_be_cut() -> None:
    error = Error(1, ErrorCode.INTERNAL, "é" * 120, 0x10)
    (fitted,) = refit(error, MIN_FRAME)
    assert isinstance(fitted, Error) and frame_size(fitted) <= MIN_FRAME
    page = TaskList(1, tuple(MAXIMAL_INFO for _ in range(3)))
    assert refit(page, MIN_FRAME) == ()  # a page is rebuilt by the device, not cut
    small = TaskStarted(1, "t")
    assert refit(small, MIN_FRAME) == (small,)
