"""Framing: CRC parameters, COBS frames, the stream decoder under splits, garbage and bit flips."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocol import Frame, FrameDecoder, FrameFlags
from firmware_protocol.crc import CRC32_CHECK, crc32
from firmware_protocol.errors import BadCrcError, OversizeError, TooShortError
from firmware_protocol.framing import encode_frame, max_encoded_size

from .strategies import frames

FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def test_crc_check_value() -> None:
    assert crc32(b"123456789") == CRC32_CHECK == 0xCBF43926


def test_frame_has_no_zero_inside_and_ends_with_delimiter() -> None:
    frame = Frame(1, 0x10, FrameFlags.SEQ, 0, 0, bytes(300))
    wire = frame.to_bytes()
    assert wire.endswith(b"\x00")
    assert b"\x00" not in wire[:-1]
    assert Frame.from_bytes(wire) == frame


def test_from_raw_errors_name_the_problem() -> None:
    raw = Frame(1, 5, FrameFlags.NONE, 0, 0, b"\x80").raw()
    try:
        Frame.from_raw(raw[:-1] + bytes([raw[-1] ^ 1]))
    except BadCrcError:
        pass
    else:
        raise AssertionError("bad CRC accepted")
    for bad, error in ((raw[:5], TooShortError), (raw, OversizeError)):
        try:
            Frame.from_raw(bad, max_frame=len(raw) - 1 if error is OversizeError else 4096)
        except error:
            continue
        raise AssertionError(f"{error.__name__} not raised")


@FAST
@given(frames())
def test_frame_round_trip(frame: Frame) -> None:
    assert Frame.from_bytes(frame.to_bytes()) == frame
    assert FrameDecoder().feed(frame.to_bytes()) == [frame]


@FAST
@given(frames())
def test_encode_frame_gives_the_frames_wire_bytes(frame: Frame) -> None:
    """What a link sends (``encode_frame``, no ``Frame`` built) is the frame's wire form."""
    fields = (frame.version, frame.type, int(frame.flags), frame.seq, frame.ack)
    assert encode_frame(*fields, payload=frame.payload) == frame.to_bytes()


@FAST
@given(st.lists(frames(), max_size=6), st.data())
def test_any_split_decodes_to_the_same_frames(items: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(f.to_bytes() for f in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    got = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert got == items
    assert decoder.stats.dropped == 0


@FAST
@given(st.binary(max_size=3000), st.lists(frames(), max_size=3))
def test_garbage_never_raises_and_valid_frames_after_it_survive(
    garbage: bytes, items: list[Frame]
) -> None:
    decoder = FrameDecoder(max_frame=1024)
    decoder.feed(garbage)  # must not raise
    got = decoder.feed(b"\x00" + b"".join(f.to_bytes() for f in items if len(f.raw()) <= 1024))
    assert got == [f for f in items if len(f.raw()) <= 1024]
    assert decoder.buffered <= max_encoded_size(1024)


@FAST
@given(frames(), st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_bit_flips_never_deliver_a_corrupted_frame(frame: Frame, positions: list[int]) -> None:
    wire = bytearray(frame.to_bytes())
    for p in positions:
        bit = p % (len(wire) * 8)
        wire[bit // 8] ^= 1 << (bit % 8)
    decoder = FrameDecoder()
    got = decoder.feed(bytes(wire) + b"\x00")
    # Flips that cancel out may leave the frame intact; anything else must be dropped.
    assert all(g == frame for g in got)


def test_oversize_run_is_dropped_and_buffer_stays_bounded() -> None:
    decoder = FrameDecoder(max_frame=128)
    for _ in range(50):
        decoder.feed(b"\x01" * 100)
        assert decoder.buffered <= max_encoded_size(128)
    good = Frame(1, 5, FrameFlags.ACK, 0, 3, b"\x80")
    assert decoder.feed(b"\x00" + good.to_bytes()) == [good]
    assert decoder.stats.oversize == 1
    assert decoder.stats.discarded_bytes > 0


def test_drop_counters() -> None:
    decoder = FrameDecoder(max_frame=128)
    good = Frame(1, 5, FrameFlags.ACK, 0, 3, b"\x80").to_bytes()
    bad_crc = bytearray(good)
    bad_crc[3] ^= 0x40
    decoder.feed(bytes(bad_crc))
    decoder.feed(b"\x05\x01\x00")  # COBS says 4 more bytes, there is 1
    decoder.feed(b"\x03\x01\x02\x00")  # valid COBS, too short for a frame
    decoder.feed(Frame(1, 5, FrameFlags.NONE, 0, 0, bytes(200)).to_bytes())
    decoder.feed(b"\x00\x00\x00")  # empty blocks are delimiters, not errors
    s = decoder.stats
    assert (s.bad_crc, s.bad_cobs, s.too_short, s.oversize, s.frames) == (1, 1, 1, 1, 0)
