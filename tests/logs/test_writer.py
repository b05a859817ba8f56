from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.logs import ContainerLogWriter, LogConfig, LogWriterClosed, Stream, parse_record
from gateway.logs.layout import rotated_log_files

from .conftest import FakeClock

MakeWriter = Callable[..., ContainerLogWriter]


def records(path: Path) -> list[tuple[str, str, bytes]]:
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        record = parse_record(line)
        out.append((record.stream.value, record.tag.value, record.content))
    return out


async def test_lines_split_across_chunks_become_full_records(make_writer: MakeWriter) -> None:
    writer = make_writer()
    for chunk in (b"he", b"llo\nwor", b"ld\r\n", b"\n"):
        writer.write(Stream.STDOUT, chunk)
    await writer.close()
    assert records(writer.path) == [
        ("stdout", "F", b"hello"),
        ("stdout", "F", b"world"),  # the CR of a CRLF is dropped
        ("stdout", "F", b""),
    ]


async def test_flush_writes_unterminated_tail_as_partial(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.write(Stream.STDOUT, b"progress: 10%")
    await writer.flush()
    writer.write(Stream.STDOUT, b" 20%\n")
    await writer.close()
    assert records(writer.path) == [
        ("stdout", "P", b"progress: 10%"),
        ("stdout", "F", b" 20%"),
    ]


async def test_long_lines_are_cut_at_the_partial_limit(make_writer: MakeWriter) -> None:
    writer = make_writer(partial_line_limit=4)
    writer.write(Stream.STDOUT, b"abcdefghij")  # unterminated: two P records now, "ij" waits
    writer.write(Stream.STDOUT, b"\n0123456789\n")
    await writer.close()
    assert records(writer.path) == [
        ("stdout", "P", b"abcd"),
        ("stdout", "P", b"efgh"),
        ("stdout", "F", b"ij"),
        ("stdout", "P", b"0123"),
        ("stdout", "P", b"4567"),
        ("stdout", "F", b"89"),
    ]


async def test_streams_are_buffered_separately(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.write(Stream.STDOUT, b"out-")
    writer.write(Stream.STDERR, b"err line\n")
    writer.write(Stream.STDOUT, b"line\n")
    await writer.close()
    assert records(writer.path) == [
        ("stderr", "F", b"err line"),
        ("stdout", "F", b"out-line"),
    ]


async def test_timestamps_come_from_the_clock(make_writer: MakeWriter, clock: FakeClock) -> None:
    writer = make_writer()
    writer.write(Stream.STDOUT, b"a\n")
    clock.advance(1.5)
    writer.write(Stream.STDOUT, b"b\n")
    await writer.close()
    lines = writer.path.read_bytes().splitlines()
    assert lines == [
        b"2023-11-14T22:13:20Z stdout F a",
        b"2023-11-14T22:13:21.5Z stdout F b",
    ]


async def test_rotation_by_size_keeps_max_files(
    make_writer: MakeWriter, container_dir: Path, clock: FakeClock
) -> None:
    writer = make_writer(max_bytes=100, max_rotated_files=2)
    record_size = len(b"2023-11-14T22:13:20Z stdout F ") + 10 + 1  # 41 bytes
    for i in range(10):
        writer.write(Stream.STDOUT, b"line-%05d\n" % i)
        await writer.flush()
        clock.advance(1)
    await writer.close()
    rotated = rotated_log_files(container_dir, 0)
    assert len(rotated) == 2
    for path in [*rotated, writer.path]:
        assert path.stat().st_size <= 100
        assert path.stat().st_size % record_size == 0
    # Two records per file: lines 0-5 were pruned with the oldest files.
    kept = [r[2] for p in [*rotated, writer.path] for r in records(p)]
    assert kept == [b"line-%05d" % i for i in range(4, 10)]


async def test_rotations_within_one_second_get_distinct_names(
    make_writer: MakeWriter, container_dir: Path
) -> None:
    writer = make_writer(max_bytes=50, max_rotated_files=10)
    for i in range(4):
        writer.write(Stream.STDOUT, b"line-%05d\n" % i)
    await writer.close()  # one flush, three rotations in the same second
    names = [p.name for p in rotated_log_files(container_dir, 0)]
    assert names == ["0.log.20231114-221320", "0.log.20231114-221320.1", "0.log.20231114-221320.2"]


async def test_reopen_appends_like_after_a_gateway_restart(make_writer: MakeWriter) -> None:
    first = make_writer()
    first.write(Stream.STDOUT, b"before\n")
    await first.close()
    second = make_writer()
    second.write(Stream.STDOUT, b"after\n")
    await second.close()
    assert [r[2] for r in records(second.path)] == [b"before", b"after"]


async def test_torn_last_record_is_terminated_on_reopen(make_writer: MakeWriter) -> None:
    first = make_writer()
    first.write(Stream.STDOUT, b"whole\n")
    await first.close()
    with first.path.open("ab") as f:
        f.write(b"2023-11-14T22:13:20Z stdout F tor")  # a crash in the middle of a write
    second = make_writer()
    second.write(Stream.STDOUT, b"next\n")
    await second.close()
    lines = second.path.read_bytes().splitlines()
    assert lines[-2:] == [
        b"2023-11-14T22:13:20Z stdout F tor",
        b"2023-11-14T22:13:20Z stdout F next",
    ]


async def test_flush_without_fsync_still_writes(make_writer: MakeWriter) -> None:
    writer = make_writer(fsync=False)
    writer.write(Stream.STDERR, b"x\n")
    await writer.flush()
    assert records(writer.path) == [("stderr", "F", b"x")]
    assert oct(writer.path.stat().st_mode & 0o777) == oct(0o640 & ~_umask())
    await writer.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


async def test_write_after_close_is_an_error(make_writer: MakeWriter) -> None:
    writer = make_writer()
    await writer.close()
    await writer.close()  # idempotent
    with pytest.raises(LogWriterClosed):
        writer.write(Stream.STDOUT, b"late\n")


# ---- publish: readable before durable -----------------------------------------------------


class SyncSpy:
    """os.fdatasync that counts its calls and, while `hold` is clear, waits (a slow disk)."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        self._real = os.fdatasync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        self.hold.wait()
        self._real(fd)


@pytest.fixture
def sync_spy(monkeypatch: pytest.MonkeyPatch) -> SyncSpy:
    spy = SyncSpy()
    monkeypatch.setattr(os, "fdatasync", spy)
    return spy


async def test_publish_writes_without_a_sync_and_the_next_flush_syncs_it(
    make_writer: MakeWriter, sync_spy: SyncSpy
) -> None:
    writer = make_writer()
    writer.write(Stream.STDOUT, b"now\nhalf")
    await writer.publish()
    # Complete records only: the unterminated line waits for a flush (which acknowledges).
    assert records(writer.path) == [("stdout", "F", b"now")]
    assert sync_spy.calls == 0
    await writer.flush()  # nothing new but the partial line; the published record is synced
    assert sync_spy.calls == 1
    assert records(writer.path) == [("stdout", "F", b"now"), ("stdout", "P", b"half")]
    await writer.close()


async def test_records_are_written_while_an_earlier_flush_waits_for_its_sync(
    make_writer: MakeWriter, sync_spy: SyncSpy
) -> None:
    """The sync runs outside the writer's I/O lock: a slow disk's sync does not hold back
    what followers can read (without that, this publish would wait for the sync)."""
    writer = make_writer()
    writer.write(Stream.STDOUT, b"one\n")
    sync_spy.hold.clear()
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.to_thread(sync_spy.entered.wait, 30)
    writer.write(Stream.STDOUT, b"two\n")
    await asyncio.wait_for(writer.publish(), 30)
    assert records(writer.path) == [("stdout", "F", b"one"), ("stdout", "F", b"two")]
    assert not flushing.done()
    sync_spy.hold.set()
    await flushing
    await writer.close()


async def test_a_failed_publish_fails_the_next_flush(tmp_path: Path, clock: FakeClock) -> None:
    """Records a publish took but could not write must not be reported durable."""
    blocked = tmp_path / "default_pod_uid"
    blocked.write_bytes(b"")  # a file where the pod's log directory should be
    writer = ContainerLogWriter(blocked / "app", 0, LogConfig(root=tmp_path), clock=clock)
    writer.write(Stream.STDOUT, b"lost\n")
    with pytest.raises(NotADirectoryError):
        await writer.publish()
    with pytest.raises(NotADirectoryError):
        await writer.flush()
