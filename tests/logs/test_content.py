"""Content files of rotated logs: written once at rotation, equal to the formatted records,
streamed as they are by reads without options, removed with their rotated file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.logs import ContainerLogWriter, Stream, read_logs
from gateway.logs.content import write_content_file
from gateway.logs.formatter import Formatter
from gateway.logs.layout import content_file, rotated_log_files

from .conftest import FakeClock, collect, source

MakeWriter = Callable[..., ContainerLogWriter]


def _formatted(path: Path) -> bytes:
    return Formatter(timestamps=False, since_ns=None, limit_bytes=None).format(path.read_bytes())


async def _rotating_log(
    make_writer: MakeWriter, clock: FakeClock
) -> tuple[ContainerLogWriter, bytes]:
    """A log rotated several times, with P records (lines cut by flushes) across the files."""
    writer = make_writer(max_bytes=300, max_rotated_files=3)
    text = b""
    for i in range(30):
        chunk = b"line %02d of output\nhalf %02d " % (i, i) if i % 3 else b"rest\n"
        writer.write(Stream.STDOUT, chunk)
        await writer.flush()
        text += chunk
        clock.advance(0.5)
    await writer.close()
    return writer, text


async def test_each_rotated_file_gets_its_formatted_content(
    make_writer: MakeWriter, clock: FakeClock, container_dir: Path
) -> None:
    await _rotating_log(make_writer, clock)
    rotated = rotated_log_files(container_dir, 0)
    assert len(rotated) == 3
    for path in rotated:
        assert content_file(path).read_bytes() == _formatted(path)
    # Files pruned by the rotation took their content files with them.
    assert sorted(p.name for p in (container_dir / ".content").iterdir()) == sorted(
        content_file(p).name for p in rotated
    )


async def test_reads_without_options_stream_content_files(
    make_writer: MakeWriter, clock: FakeClock, container_dir: Path
) -> None:
    """A whole rotated file is read from its content file; options that need the records
    (timestamps, since, a tail starting inside it) read the records."""
    await _rotating_log(make_writer, clock)
    oldest = rotated_log_files(container_dir, 0)[0]
    formatted = _formatted(oldest)
    content_file(oldest).write_bytes(b"from the content file\n")
    whole = await collect(read_logs(source(container_dir)))
    assert whole.startswith(b"from the content file\n")
    limited = await collect(read_logs(source(container_dir), limit_bytes=9))
    assert limited == b"from the "
    stamped = await collect(read_logs(source(container_dir), timestamps=True))
    assert b"from the content file" not in stamped
    since = await collect(read_logs(source(container_dir), since_ns=0))
    assert since.startswith(formatted)


async def test_a_log_across_rotations_reads_back_as_written(
    make_writer: MakeWriter, clock: FakeClock, container_dir: Path
) -> None:
    writer, text = await _rotating_log(make_writer, clock)
    kept = b"".join(_formatted(p) for p in [*rotated_log_files(container_dir, 0), writer.path])
    assert text.endswith(kept)  # the oldest files were pruned
    assert await collect(read_logs(source(container_dir))) == kept


def test_no_content_file_for_a_rotated_file_that_is_gone(tmp_path: Path) -> None:
    gone = tmp_path / "0.log.20231114-221320"
    assert write_content_file(gone) is None
    assert not content_file(gone).exists()


async def test_rotated_files_without_content_get_it_when_the_log_is_continued(
    make_writer: MakeWriter, clock: FakeClock, container_dir: Path
) -> None:
    """A gateway that crashed before writing a content file (or one from before content
    files) leaves rotated files without; the next writer of that log writes them."""
    await _rotating_log(make_writer, clock)
    rotated = rotated_log_files(container_dir, 0)
    for path in rotated:
        content_file(path).unlink()
    continued = make_writer(max_bytes=300, max_rotated_files=3)
    continued.write(Stream.STDOUT, b"after the restart\n")
    await continued.close()
    for path in rotated_log_files(container_dir, 0):
        assert content_file(path).read_bytes() == _formatted(path)
