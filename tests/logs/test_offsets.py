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


def test_intent_is_judged_by_the_file_itself(tmp_path: Path) -> None:
    """Written ahead of the log write: a crash before the write means `before`, after it
    `after`, whenever the record was replaced."""
    from gateway.logs.offsets import save_intent

    log = tmp_path / "0.log"
    log.write_bytes(b"x" * 100)
    save_intent(
        tmp_path,
        0,
        inode=log.stat().st_ino,
        size_before=100,
        size_after=150,
        before={"stdout": 10},
        after={"stdout": 60},
    )
    assert load_offsets(tmp_path, 0) == {"stdout": 10}  # killed before the write
    with log.open("ab") as f:
        f.write(b"y" * 50)
    assert load_offsets(tmp_path, 0) == {"stdout": 60}  # killed after it
    save_intent(tmp_path, 0, inode=1, size_before=0, size_after=5, before={}, after={"stdout": 65})
    # The record's file was rotated away and pruned: only ever after its write completed.
    assert load_offsets(tmp_path, 0) == {"stdout": 65}


async def test_writer_keeps_offsets_per_record_across_rotation(tmp_path: Path) -> None:
    from gateway.logs import LogConfig, LogStore, Stream

    store = LogStore(LogConfig(root=tmp_path, max_bytes=100, max_rotated_files=10))
    writer = store.open_writer("ns", "pod", "uid", "c", 0)
    data = b"".join(b"line-%05d\n" % i for i in range(6))
    writer.write(Stream.STDOUT, data[:25], end=25)  # lines split anywhere
    writer.write(Stream.STDOUT, data[25:], end=len(data))
    writer.write(Stream.STDERR, b"half a li", end=9)
    await writer.flush()  # several rotations in one flush
    assert load_offsets(writer.container_dir, 0) == {"stdout": len(data), "stderr": 9}
    again = store.open_writer("ns", "pod", "uid", "c", 0)
    assert again.recorded_offsets() == {"stdout": len(data), "stderr": 9}
    await writer.close()


def test_intent_is_rewritten_in_place_and_a_shorter_one_replaces_all(tmp_path: Path) -> None:
    """One write over the same file, no temporary file and rename (the costly part of a
    flush); a shorter record after a longer one reads as itself."""
    from gateway.logs.offsets import save_intent

    log = tmp_path / "0.log"
    log.write_bytes(b"x" * 100)
    inode = log.stat().st_ino
    big = {"stdout": 10**15, "stderr": 10**15}
    save_intent(tmp_path, 0, inode=inode, size_before=0, size_after=100, before={}, after=big)
    record_inode = offsets_file(tmp_path, 0).stat().st_ino
    save_intent(
        tmp_path, 0, inode=inode, size_before=0, size_after=100, before={}, after={"stdout": 5}
    )
    assert offsets_file(tmp_path, 0).stat().st_ino == record_inode
    assert load_offsets(tmp_path, 0) == {"stdout": 5}
    assert not list(tmp_path.glob("*.tmp"))


def test_torn_intent_reads_as_no_record(tmp_path: Path) -> None:
    """A record torn between two writes (the old one's start, the new one's end) would claim
    offsets the log lacks; its checksum fails and nothing is dropped instead."""
    from gateway.logs.offsets import save_intent

    log = tmp_path / "0.log"
    log.write_bytes(b"x" * 250)
    inode = log.stat().st_ino
    record = offsets_file(tmp_path, 0)
    sizes = {"inode": inode}
    save_intent(
        tmp_path,
        0,
        **sizes,
        size_before=100,
        size_after=200,
        before={"stdout": 10},
        after={"stdout": 20},
    )
    old = record.read_bytes()
    save_intent(
        tmp_path,
        0,
        **sizes,
        size_before=200,
        size_after=300,
        before={"stdout": 20},
        after={"stdout": 30},
    )
    new = record.read_bytes()
    assert load_offsets(tmp_path, 0) == {"stdout": 20}  # the new write has not landed
    cut = new.index(b'"before"')
    record.write_bytes(old[:cut] + new[cut:])  # the old sizes (landed), the new offsets
    assert load_offsets(tmp_path, 0) == {}


def test_record_too_long_for_the_block_is_replaced_whole(tmp_path: Path) -> None:
    from gateway.logs.offsets import RECORD_BLOCK, save_intent

    many = {f"stream{i}": i for i in range(60)}
    save_intent(tmp_path, 0, inode=1, size_before=0, size_after=5, before={}, after=many)
    assert offsets_file(tmp_path, 0).stat().st_size > RECORD_BLOCK
    assert load_offsets(tmp_path, 0) == many
    save_intent(tmp_path, 0, inode=1, size_before=0, size_after=5, before={}, after={"stdout": 3})
    assert offsets_file(tmp_path, 0).stat().st_size == RECORD_BLOCK
    assert load_offsets(tmp_path, 0) == {"stdout": 3}
