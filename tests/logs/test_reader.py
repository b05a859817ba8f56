from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.logs import ContainerLogWriter, LogConfig, LogNotFound, LogSource, Stream, read_logs
from gateway.logs.changes import LogChanges
from gateway.logs.cri import CriRecord, parse_record
from gateway.logs.timestamps import format_rfc3339nano

from .conftest import BASE_NS, FakeClock, collect, source

MakeWriter = Callable[..., ContainerLogWriter]


async def write_lines(
    writer: ContainerLogWriter, *chunks: bytes, stream: Stream = Stream.STDOUT
) -> None:
    for chunk in chunks:
        writer.write(stream, chunk)
    await writer.flush()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"")),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    flush_between=st.booleans(),
)
async def test_round_trip_of_arbitrary_splits(
    tmp_path_factory: pytest.TempPathFactory, text: bytes, cuts: list[int], flush_between: bool
) -> None:
    directory = tmp_path_factory.mktemp("logs") / "ns_pod_uid" / "c"
    writer = ContainerLogWriter(
        directory, 0, LogConfig(root=directory, partial_line_limit=16, fsync=False)
    )
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    for start, end in itertools.pairwise(bounds):
        writer.write(Stream.STDOUT, text[start:end])
        if flush_between:
            await writer.flush()
    await writer.close()
    assert await collect(read_logs(LogSource(directory, 0, _stopped))) == text


async def _stopped() -> bool:
    return False


async def test_partials_are_rejoined_without_timestamps(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    writer = make_writer()
    await write_lines(writer, b"progress 10%")
    await write_lines(writer, b" 20%")
    await write_lines(writer, b" done\nnext\n")
    await writer.close()
    assert await collect(read_logs(source(container_dir))) == b"progress 10% 20% done\nnext\n"


async def test_timestamps_prefix_each_line_once(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock
) -> None:
    writer = make_writer()
    await write_lines(writer, b"first ")
    clock.advance(0.25)
    await write_lines(writer, b"half\n")
    clock.advance(0.25)
    await write_lines(writer, b"second\n")
    await writer.close()
    out = await collect(read_logs(source(container_dir), timestamps=True))
    assert out == (
        b"2023-11-14T22:13:20Z first half\n"  # the P record's stamp starts the line
        b"2023-11-14T22:13:20.5Z second\n"
    )


async def test_stdout_and_stderr_interleave_in_write_order(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    writer = make_writer()
    await write_lines(writer, b"out 1\n")
    await write_lines(writer, b"err 1\n", stream=Stream.STDERR)
    await write_lines(writer, b"out ")
    await write_lines(writer, b"err 2\n", stream=Stream.STDERR)
    await write_lines(writer, b"2\n")
    await writer.close()
    out = await collect(read_logs(source(container_dir), timestamps=True))
    stamp = b"2023-11-14T22:13:20Z "
    # The stderr line in the middle of a partial stdout line keeps its own timestamp.
    assert out == stamp + b"out 1\n" + stamp + b"err 1\n" + stamp + b"out " + stamp + b"err 2\n2\n"


async def rotated_writer(make_writer: MakeWriter, clock: FakeClock, lines: int) -> None:
    writer = make_writer(max_bytes=100, max_rotated_files=10)
    for i in range(lines):
        await write_lines(writer, b"line-%05d\n" % i)
        clock.advance(1)
    await writer.close()


async def test_reads_across_rotated_files_in_order(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock
) -> None:
    await rotated_writer(make_writer, clock, 9)
    out = await collect(read_logs(source(container_dir)))
    assert out == b"".join(b"line-%05d\n" % i for i in range(9))


@pytest.mark.parametrize("tail", [0, 1, 2, 3, 5, 8, 9, 50])
async def test_tail_counts_lines_across_rotation(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock, tail: int
) -> None:
    await rotated_writer(make_writer, clock, 9)
    out = await collect(read_logs(source(container_dir), tail_lines=tail))
    assert out == b"".join(b"line-%05d\n" % i for i in range(max(0, 9 - tail), 9))


async def test_tail_counts_a_partial_line_as_one(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    writer = make_writer(partial_line_limit=4)
    await write_lines(writer, b"one\n", b"a long line\n", b"unfinished")
    await writer.close()
    assert await collect(read_logs(source(container_dir), tail_lines=1)) == b"unfinished"
    out = await collect(read_logs(source(container_dir), tail_lines=2))
    assert out == b"a long line\nunfinished"


async def test_since_filters_by_line_timestamp(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock
) -> None:
    await rotated_writer(make_writer, clock, 6)
    since = BASE_NS + 3_000_000_000  # the fourth line was written at +3 s
    out = await collect(read_logs(source(container_dir), since_ns=since))
    assert out == b"line-00003\nline-00004\nline-00005\n"


async def test_limit_bytes_cuts_the_output(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock
) -> None:
    await rotated_writer(make_writer, clock, 6)
    out = await collect(read_logs(source(container_dir), limit_bytes=15))
    assert out == b"line-00000\nline"
    out = await collect(read_logs(source(container_dir), limit_bytes=15, timestamps=True))
    assert out == b"2023-11-14T22:1"


async def test_previous_reads_the_earlier_restart(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    old = make_writer(restart=0)
    await write_lines(old, b"crashed\n")
    await old.close()
    new = make_writer(restart=1)
    await write_lines(new, b"running again\n")
    await new.close()
    assert await collect(read_logs(source(container_dir, 1))) == b"running again\n"
    assert await collect(read_logs(source(container_dir, 1), previous=True)) == b"crashed\n"
    with pytest.raises(LogNotFound):
        await collect(read_logs(source(container_dir, 0), previous=True))


async def test_missing_current_log_reads_empty(container_dir: Path) -> None:
    assert await collect(read_logs(source(container_dir))) == b""


class Running:
    def __init__(self) -> None:
        self.running = True

    async def __call__(self) -> bool:
        return self.running


async def test_follow_sees_appends_and_ends_when_the_container_stops(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock
) -> None:
    writer = make_writer(max_bytes=100, max_rotated_files=1)
    await write_lines(writer, b"before\n")
    state = Running()
    follow = read_logs(LogSource(container_dir, 0, state), follow=True, poll_interval=0.01)
    received = bytearray()

    async def consume() -> None:
        async for chunk in follow:
            received.extend(chunk)

    consumer = asyncio.create_task(consume(), name="follow-consumer")
    try:
        await _until(lambda: received == b"before\n")
        # Enough lines to rotate twice while following: nothing may be lost or repeated.
        for i in range(6):
            await write_lines(writer, b"line-%05d\n" % i)
            clock.advance(1)
            await asyncio.sleep(0.03)
        expected = b"before\n" + b"".join(b"line-%05d\n" % i for i in range(6))
        await _until(lambda: received == expected)
        await write_lines(writer, b"last words\n")
        state.running = False
        await asyncio.wait_for(consumer, 2)
        assert received == expected + b"last words\n"
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await writer.close()


async def test_follow_waits_for_the_file_and_honours_stop(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    stop = asyncio.Event()
    received = bytearray()

    async def consume() -> None:
        async for chunk in read_logs(
            source(container_dir, running=True), follow=True, stop=stop.is_set, poll_interval=0.01
        ):
            received.extend(chunk)

    consumer = asyncio.create_task(consume(), name="follow-consumer")
    writer = make_writer()
    await asyncio.sleep(0.05)
    await write_lines(writer, b"hello\n")
    await _until(lambda: received == b"hello\n")
    stop.set()
    await asyncio.wait_for(consumer, 2)
    await writer.close()


async def test_follow_with_limit_stops_at_the_limit(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    writer = make_writer()
    await write_lines(writer, b"0123456789\n")
    out = await asyncio.wait_for(
        collect(read_logs(source(container_dir, running=True), follow=True, limit_bytes=4)), 2
    )
    assert out == b"0123"
    await writer.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition the follow consumer makes true (it has no event to wait on)."""
    async with asyncio.timeout(2.0):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


# ---- follow woken by the writer; the fast formatting paths --------------------------------

# A poll interval no test run reaches: a follower that sees anything was woken by the writer.
_NEVER = 3600.0


async def test_follower_is_woken_by_a_write_without_polling(container_dir: Path) -> None:
    changes = LogChanges()
    signal = changes.signal(container_dir)
    config = LogConfig(root=container_dir.parent.parent, fsync=False)
    writer = ContainerLogWriter(container_dir, 0, config, changes=signal)
    await write_lines(writer, b"before\n")
    state = Running()
    source_ = LogSource(container_dir, 0, state, signal)
    received = bytearray()
    arrived = asyncio.Event()

    async def consume() -> None:
        async for chunk in read_logs(source_, follow=True, poll_interval=_NEVER):
            received.extend(chunk)
            arrived.set()

    consumer = asyncio.create_task(consume(), name="follow-consumer")
    try:
        await arrived.wait()
        assert received == b"before\n"
        arrived.clear()
        await write_lines(writer, b"after\n")
        await arrived.wait()
        assert received == b"before\nafter\n"
        # The container stops and its log is closed: the close wakes the follower, which ends.
        state.running = False
        await writer.close()
        await consumer
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


async def test_a_follower_reads_new_lines_without_a_worker_thread(container_dir: Path) -> None:
    """New lines reach a follower even while every worker thread is busy (a disk's syncs, a
    large fetch): its reads of what was just written run on the event loop."""
    loop = asyncio.get_running_loop()
    workers = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(workers)
    signal = LogChanges().signal(container_dir)
    _raw_log(container_dir, b"2023-11-14T22:13:20Z stdout F before\n")
    received = asyncio.Queue[bytes]()

    async def consume() -> None:
        async for chunk in read_logs(
            LogSource(container_dir, 0, Running(), signal), follow=True, poll_interval=_NEVER
        ):
            if chunk:
                received.put_nowait(chunk)

    consumer = asyncio.create_task(consume(), name="follow-consumer")
    busy = threading.Event()
    occupied: asyncio.Future[bool] | None = None
    try:
        async with asyncio.timeout(10):
            assert await received.get() == b"before\n"
            occupied = loop.run_in_executor(None, busy.wait)  # the only worker, held
            with (container_dir / "0.log").open("ab") as log:
                log.write(b"2023-11-14T22:13:21Z stdout F after\n")
            signal.notify()
            assert await received.get() == b"after\n"
    finally:
        busy.set()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        if occupied is not None:
            await occupied
        workers.shutdown()


async def test_written_bytes_are_readable_before_the_sync(container_dir: Path) -> None:
    """Followers are woken after the write and before fdatasync (the writer's after_write
    hook runs in between): the file already holds the record then."""
    signal = LogChanges().signal(container_dir)
    config = LogConfig(root=container_dir.parent.parent, fsync=True)
    writer = ContainerLogWriter(container_dir, 0, config, changes=signal)
    seen_at_hook: list[int] = []
    writer.write(Stream.STDOUT, b"x\n")
    await writer.flush(after_write=lambda: seen_at_hook.append(signal.generation))
    assert seen_at_hook == [1]
    assert await collect(read_logs(source(container_dir))) == b"x\n"
    await writer.close()


def _raw_log(container_dir: Path, *records: bytes) -> None:
    container_dir.mkdir(parents=True, exist_ok=True)
    (container_dir / "0.log").write_bytes(b"".join(records))


_MIXED = (
    b"2023-11-14T22:13:20Z stdout F plain\n",
    b"2023-11-14T22:13:20.5Z stdout P half \n",
    b"2023-11-14T22:13:21Z stderr F err\rwith a carriage return\n",
    b"2023-11-14T22:13:21.25Z stdout F line\n",
    b"not a record at all\n",
    b"2023-11-14T22:13:22Z stdout F \n",
    b"2023-11-14T22:13:23Z stdout P:x tagged partial\n",
    b"2023-11-14T22:13:24Z stdout F end\n",
)


@pytest.mark.parametrize("records", [_MIXED, _MIXED[:1] + _MIXED[3:4] + _MIXED[5:6]])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"timestamps": True},
        {"limit_bytes": 7},
        {"limit_bytes": 1000},
        {"tail_lines": 2},
        {"tail_lines": 2, "timestamps": True},
        {"since_ns": BASE_NS + 1_000_000_000},
    ],
    ids=repr,
)
async def test_whole_block_formatting_matches_record_by_record(
    container_dir: Path, records: tuple[bytes, ...], options: dict[str, Any]
) -> None:
    """The C-level paths (F-only blocks, F/P blocks) give exactly what formatting each record
    does, for every option, on blocks they handle and on blocks they must hand over."""
    _raw_log(container_dir, *records)
    out = await collect(read_logs(source(container_dir), **options))
    assert out == _expected_output(records, options)


def _expected_output(records: tuple[bytes, ...], options: dict[str, Any]) -> bytes:
    """`kubectl logs` output for these records, worked out from their meaning."""
    rows = []
    for record in records:
        try:
            parsed = parse_record(record)
        except ValueError:
            continue
        rows.append(parsed)
    if "tail_lines" in options:
        lines: list[list[CriRecord]] = []
        for row in rows:
            if not lines or not lines[-1][-1].partial:
                lines.append([])
            lines[-1].append(row)
        rows = [row for line in lines[-options["tail_lines"] :] for row in line]
    out = bytearray()
    at_start = {Stream.STDOUT: True, Stream.STDERR: True}
    for row in rows:
        if "since_ns" in options and row.timestamp_ns < options["since_ns"]:
            continue
        if options.get("timestamps") and at_start[row.stream]:
            out += format_rfc3339nano(row.timestamp_ns).encode() + b" "
        out += row.content if row.partial else row.content + b"\n"
        at_start[row.stream] = not row.partial
    limit = options.get("limit_bytes")
    return bytes(out if limit is None else out[:limit])


_RUNS = (
    # One write of three lines (one header), then a stderr line in the middle of a stdout run,
    # then a run broken by a P record, then a run whose last line has the same stamp but F.
    b"2023-11-14T22:13:20Z stdout F a\n" * 3,
    b"2023-11-14T22:13:21Z stdout F b\n",
    b"2023-11-14T22:13:21Z stderr F e\n",
    b"2023-11-14T22:13:21Z stdout F c\n",
    b"2023-11-14T22:13:22Z stdout P p1 \n",
    b"2023-11-14T22:13:22Z stdout F p2\n",
    b"2023-11-14T22:13:23Z stdout F 2023-11-14T22:13:23Z stdout F looks like a header\n" * 2,
)


@pytest.mark.parametrize("records", [_RUNS, _RUNS[:1], _RUNS[:2], _RUNS[6:]])
@pytest.mark.parametrize("options", [{}, {"timestamps": True}, {"limit_bytes": 5}], ids=repr)
async def test_runs_of_shared_headers_format_like_single_records(
    container_dir: Path, records: tuple[bytes, ...], options: dict[str, Any]
) -> None:
    """Records of one write share a header and are stripped run by run; interleaved streams,
    P records and content that looks like a header must not confuse that."""
    _raw_log(container_dir, *records)
    out = await collect(read_logs(source(container_dir), **options))
    lines = tuple(line + b"\n" for record in records for line in record.split(b"\n")[:-1])
    assert out == _expected_output(lines, options)


async def test_a_log_of_several_reads_is_read_whole_and_can_be_left_early(
    container_dir: Path,
) -> None:
    """Blocks are read and formatted one ahead of the consumer; all arrive, in order, and a
    consumer that stops after the first leaves no read running on a closed file."""
    lines = [b"%015d" % i for i in range(200_000)]  # 8 MB of records: several 1 MiB reads
    _raw_log(container_dir, *(b"2023-11-14T22:13:20Z stdout F " + line + b"\n" for line in lines))
    assert await collect(read_logs(source(container_dir))) == b"\n".join(lines) + b"\n"

    chunks = read_logs(source(container_dir))
    async with contextlib.aclosing(chunks):
        first = await anext(chunks)
    assert first and b"\n".join(lines).startswith(first)
