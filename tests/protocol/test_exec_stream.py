"""Streamed EXEC output (PROTOCOL.md section 9): EXEC `stream`, EXEC_OUTPUT, EXEC_RESULT ends.

Forward compatible: a plain EXEC keeps its first-revision bytes, and a first-revision decoder
(which knows keys 0-3 of EXEC and 0-4 of EXEC_RESULT) still reads the new ones."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from firmware_protocol import (
    MAX_FRAME_CEILING,
    MIN_FRAME,
    Exec,
    ExecOutput,
    ExecResult,
    MessageType,
    OutputStream,
    max_exec_output_data,
    refit,
)
from firmware_protocol.constants import FRAME_OVERHEAD

U32 = 2**32 - 1
U64 = 2**64 - 1


def frame_size(message: ExecOutput | ExecResult) -> int:
    return len(message.to_bytes()) + FRAME_OVERHEAD


def test_exec_output_type_is_the_next_free_device_report_code() -> None:
    assert int(MessageType.EXEC_OUTPUT) == 0x26
    assert ExecOutput.SENDERS == ExecResult.SENDERS


def test_plain_exec_keeps_its_first_revision_bytes() -> None:
    plain = Exec(4, ("cat", "/proc/meminfo"), 5000, "pod-1/blink")
    assert set(msgpack.unpackb(plain.to_bytes(), strict_map_key=False)) == {0, 1, 2, 3}
    streamed = dataclasses.replace(plain, stream=True)
    assert msgpack.unpackb(streamed.to_bytes(), strict_map_key=False)[4] is True
    assert Exec.from_bytes(streamed.to_bytes()) == streamed


def test_first_revision_decoders_ignore_the_new_keys() -> None:
    """What an old device or gateway sees: the new keys are unknown keys, dropped."""
    old_exec_keys = {0, 1, 2, 3}
    raw = msgpack.unpackb(
        Exec(5, ("seq", "9"), 0, "", stream=True).to_bytes(), strict_map_key=False
    )
    known = {k: v for k, v in raw.items() if k in old_exec_keys}
    assert known == {0: 5, 1: ["seq", "9"], 2: 0, 3: ""}
    result = ExecResult(5, 3, stdout_end=10, stderr_end=2)
    decoded = msgpack.unpackb(result.to_bytes(), strict_map_key=False)
    assert decoded[1] == 3 and decoded[2] == b"" and decoded[4] is False
    # A single-frame result keeps its original bytes (no ends written).
    single = ExecResult(4, 0, b"hi\n")
    assert 5 not in msgpack.unpackb(single.to_bytes(), strict_map_key=False)
    assert ExecResult.from_bytes(single.to_bytes()).stdout_end is None


@pytest.mark.parametrize("request_id", [1, 127, 255, 65535, U32])
@pytest.mark.parametrize("offset", [0, 127, 65535, 2**32, U64])
def test_max_exec_output_data_is_exact(request_id: int, offset: int) -> None:
    for max_frame in (*range(MIN_FRAME, 300), *range(500, 530), MAX_FRAME_CEILING):
        n = max_exec_output_data(max_frame, request_id=request_id, offset=offset)
        fits = ExecOutput(request_id, OutputStream.STDOUT, offset, bytes(n))
        assert frame_size(fits) <= max_frame, (max_frame, n)
        bigger = ExecOutput(request_id, OutputStream.STDOUT, offset, bytes(n + 1))
        assert frame_size(bigger) > max_frame, (max_frame, n)


def test_max_exec_output_data_default_holds_for_any_request_and_offset() -> None:
    n = max_exec_output_data(MIN_FRAME)
    assert n > 0
    for request_id in (1, U32):
        for offset in (0, 300, 2**40, U64):
            piece = ExecOutput(request_id, OutputStream.STDERR, offset, bytes(n))
            assert frame_size(piece) <= MIN_FRAME
    assert frame_size(ExecResult(U32, -(2**63), stdout_end=U64, stderr_end=U64)) <= MIN_FRAME


def test_refit_splits_exec_output_at_consecutive_offsets() -> None:
    data = bytes(range(256)) * 8
    big = ExecOutput(7, OutputStream.STDOUT, 1000, data)
    pieces = refit(big, MIN_FRAME)
    assert len(pieces) > 1
    offset = 1000
    for piece in pieces:
        assert isinstance(piece, ExecOutput) and piece.request_id == 7
        assert piece.offset == offset and frame_size(piece) <= MIN_FRAME
        offset += len(piece.data)
    assert b"".join(p.data for p in pieces if isinstance(p, ExecOutput)) == data
