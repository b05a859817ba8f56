"""Exec output larger than one frame (PROTOCOL.md section 9, streamed exec output): the session
and the emulator over real pseudo-terminals, with streaming and with first-revision devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_protocol import Exec, ExecOutput, OutputStream
from gateway.errors import DeviceRejected
from gateway.link.exec_stream import ExecChunk, ExecStream, closing
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from tests.link.helpers import FAST_SESSION, WAIT, session_for


def seq_output(last: int) -> bytes:
    return "".join(f"{n}\n" for n in range(1, last + 1)).encode()


async def collect(stream: ExecStream) -> list[ExecChunk]:
    async with closing(stream) as chunks:
        return [chunk async for chunk in chunks]


async def run_on(
    tmp_path: Path, profile: DeviceProfile, argv: list[str], limit: int | None = None
) -> tuple[list[ExecChunk], ExecStream, list[object]]:
    async with (
        EmulatedFleet(tmp_path, [profile]) as fleet,
        session_for(tmp_path, profile.device_id, FAST_SESSION) as session,
    ):
        await session.wait_up(WAIT)
        stream = session.exec_stream(argv, timeout_s=WAIT, limit_bytes=limit)
        chunks = await collect(stream)
        assert session.state_sizes()["exec_streams"] == 0
        return chunks, stream, list(fleet.device(profile.device_id).received)


async def test_output_of_many_frames_arrives_whole_and_in_order(tmp_path: Path) -> None:
    """~50 KB of `seq` output: over a hundred EXEC_OUTPUT frames of a 512-byte link."""
    chunks, stream, received = await run_on(tmp_path, DeviceProfile(device_id="b"), ["seq", "9000"])
    expected = seq_output(9000)
    assert len(expected) > 40_000
    assert b"".join(c.data for c in chunks if c.stream == "stdout") == expected
    assert len(chunks) > len(expected) // 512  # it came piece by piece, not in one answer
    assert stream.end is not None
    assert (stream.end.exit_code, stream.end.truncated, stream.end.missing_bytes) == (0, False, 0)
    assert any(isinstance(m, Exec) and m.stream for m in received)


async def test_stderr_and_the_exit_code(tmp_path: Path) -> None:
    chunks, stream, _ = await run_on(
        tmp_path, DeviceProfile(device_id="b"), ["fail", "3", "no", "sensor"]
    )
    assert chunks == [ExecChunk("stderr", b"no sensor\n")]
    assert stream.end is not None and stream.end.exit_code == 3


async def test_a_device_without_streamed_exec_answers_in_one_cut_frame(tmp_path: Path) -> None:
    """A first-revision firmware ignores EXEC `stream`: its one EXEC_RESULT is all there is,
    and the stream says the device cut it."""
    profile = DeviceProfile(device_id="old", streamed_exec=False)
    chunks, stream, _ = await run_on(tmp_path, profile, ["seq", "9000"])
    data = b"".join(c.data for c in chunks)
    assert 0 < len(data) < 512 and seq_output(9000).startswith(data)
    assert stream.end is not None and stream.end.truncated
    small, stream, _ = await run_on(tmp_path, profile, ["echo", "hi"])
    assert small == [ExecChunk("stdout", b"hi\n")]
    assert stream.end is not None and not stream.end.truncated


async def test_output_beyond_the_limit_is_dropped_and_said_so(tmp_path: Path) -> None:
    chunks, stream, _ = await run_on(
        tmp_path, DeviceProfile(device_id="b"), ["seq", "9000"], limit=10_000
    )
    assert b"".join(c.data for c in chunks) == seq_output(9000)[:10_000]
    assert stream.end is not None and stream.end.limit_reached and stream.end.exit_code == 0


async def test_a_command_past_its_timeout_is_refused_by_the_device(tmp_path: Path) -> None:
    async with (
        EmulatedFleet(tmp_path, [DeviceProfile(device_id="b")]),
        session_for(tmp_path, "b", FAST_SESSION) as session,
    ):
        await session.wait_up(WAIT)
        stream = session.exec_stream(["sleep", "60"], timeout_s=0.2)
        with pytest.raises(DeviceRejected, match="ran past timeout_ms 200") as info:
            await collect(stream)
        assert info.value.code == "TIMEOUT"


async def test_feed_skips_repeats_and_counts_gaps() -> None:
    """Offsets, as the sequenced link could only break them through a buggy device."""
    stream = ExecStream()
    out, err = OutputStream.STDOUT, OutputStream.STDERR
    stream.feed(ExecOutput(1, out, 0, b"abc"))
    stream.feed(ExecOutput(1, out, 1, b"bcd"))  # repeat of "bc"
    stream.feed(ExecOutput(1, out, 6, b"g"))  # "ef" never came
    stream.feed(ExecOutput(1, err, 0, b"E"))
    chunks = []
    while not stream._queue.empty():
        chunks.append(stream._queue.get_nowait())
    assert chunks == [
        ExecChunk("stdout", b"abc"),
        ExecChunk("stdout", b"d"),
        ExecChunk("stdout", b"g"),
        ExecChunk("stderr", b"E"),
    ]
    assert stream._missing == 2


async def test_late_output_of_an_abandoned_command_is_dropped(tmp_path: Path) -> None:
    """A reader that leaves early (kubectl's Ctrl-C) ends the stream; the device's output
    for that request still comes and is acknowledged and dropped."""
    async with (
        EmulatedFleet(tmp_path, [DeviceProfile(device_id="b")]) as fleet,
        session_for(tmp_path, "b", FAST_SESSION) as session,
    ):
        await session.wait_up(WAIT)
        stream = session.exec_stream(["seq", "20000"], timeout_s=WAIT)
        async with closing(stream) as chunks:
            async for _ in chunks:
                break
        assert session.state_sizes()["exec_streams"] == 0
        # The session still works: a later command gets its own, whole output.
        again = await collect(session.exec_stream(["echo", "after"], timeout_s=WAIT))
        assert again == [ExecChunk("stdout", b"after\n")]
        device = fleet.device("b")
        assert sum(isinstance(m, Exec) for m in device.received) == 2
