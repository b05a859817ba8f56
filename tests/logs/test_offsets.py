"""The per-instance offsets record: round trip, atomic replacement, unreadable means empty."""

from __future__ import annotations

from pathlib import Path

from gateway.logs.offsets import load_offsets, offsets_file, save_offsets


def test_round_trip_and_replace(tmp_path: Path) -> None:
    save_offsets(tmp_path, 2, {"stdout": 10, "stderr": 0})
    save_offsets(tmp_path, 2, {"stdout": 25, "stderr": 3})
    assert load_offsets(tmp_path, 2) == {"stdout": 25, "stderr": 3}
    assert load_offsets(tmp_path, 3) == {}
    assert not list(tmp_path.glob("*.tmp"))


def test_garbage_record_means_nothing_is_dropped(tmp_path: Path) -> None:
    offsets_file(tmp_path, 0).write_text("{not json")
    assert load_offsets(tmp_path, 0) == {}
    offsets_file(tmp_path, 0).write_text('["stdout", 4]')
    assert load_offsets(tmp_path, 0) == {}


async def test_writer_runs_after_write_before_returning(tmp_path: Path) -> None:
    from gateway.logs import LogConfig, LogStore, Stream

    store = LogStore(LogConfig(root=tmp_path))
    writer = store.open_writer("ns", "pod", "uid", "c", 0)
    writer.write(Stream("stdout"), b"hello\n")
    seen: list[int] = []
    await writer.flush(lambda: seen.append(writer.path.stat().st_size))
    assert seen and seen[0] > 0  # the data was in the file when the callback ran
    await writer.close()
