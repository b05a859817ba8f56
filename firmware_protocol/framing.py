"""Frames on the wire: header + msgpack payload + CRC-32, COBS-encoded, 0x00-terminated.

``Frame`` is one decoded frame; ``FrameDecoder`` turns an arbitrary byte stream into frames,
resynchronising on the next 0x00 after garbage and never raising on bad input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Final, NamedTuple

from cobs import cobs

from .constants import CRC_SIZE, FRAME_OVERHEAD, HEADER_SIZE, MAX_FRAME_CEILING
from .crc import crc32
from .errors import BadCobsError, BadCrcError, FramingError, OversizeError, TooShortError

DELIMITER: Final[bytes] = b"\x00"
_HEADER = struct.Struct(">BBBHH")
_CRC = struct.Struct(">I")


class FrameFlags(IntFlag):
    """Header flag bits. Unknown bits must be sent as 0 and ignored on receipt."""

    NONE = 0
    #: The frame occupies a sequence number and must be acknowledged.
    SEQ = 0x01
    #: The ack field is valid (always set once the link is up).
    ACK = 0x02


_SEQ_BIT = int(FrameFlags.SEQ)
_ACK_BIT = int(FrameFlags.ACK)


def max_encoded_size(max_frame: int) -> int:
    """Bytes a COBS block of a ``max_frame``-byte frame can take, without the delimiter."""
    return max_frame + max_frame // 254 + 1


class Frame(NamedTuple):
    """One frame: the header fields and the raw msgpack payload.

    A named tuple, not a frozen dataclass: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, and a frame is built for every frame received."""

    version: int
    type: int
    flags: FrameFlags
    seq: int
    ack: int
    payload: bytes

    # On plain ints: IntFlag's own `&` is Python code, and runs for every frame.
    @property
    def sequenced(self) -> bool:
        return bool(int(self.flags) & _SEQ_BIT)

    @property
    def has_ack(self) -> bool:
        return bool(int(self.flags) & _ACK_BIT)

    def raw(self) -> bytes:
        """Header + payload + CRC, before COBS."""
        header = _HEADER.pack(self.version, self.type, int(self.flags), self.seq, self.ack)
        return _raw(header, self.payload)

    def to_bytes(self) -> bytes:
        """The wire form: COBS block followed by the 0x00 delimiter."""
        return bytes(cobs.encode(self.raw())) + DELIMITER

    @classmethod
    def from_raw(cls, raw: bytes, max_frame: int = MAX_FRAME_CEILING) -> Frame:
        """Decode header + payload + CRC (already COBS-decoded)."""
        size = len(raw)
        if size > max_frame:
            raise OversizeError(f"frame of {size} bytes exceeds limit {max_frame}")
        if size < FRAME_OVERHEAD:
            raise TooShortError(f"frame of {size} bytes is shorter than {FRAME_OVERHEAD}")
        end = size - CRC_SIZE
        if crc32(raw[:end]) != _CRC.unpack_from(raw, end)[0]:
            raise BadCrcError("CRC-32 mismatch")
        version, msg_type, flags, seq, ack = _HEADER.unpack_from(raw)
        # Table lookup: constructing an IntFlag per frame costs more than the CRC.
        return _new_frame(cls, (version, msg_type, _FLAGS[flags], seq, ack, raw[HEADER_SIZE:end]))

    @classmethod
    def from_bytes(cls, data: bytes, max_frame: int = MAX_FRAME_CEILING) -> Frame:
        """Decode one wire frame (COBS block, with or without its trailing delimiter)."""
        if data.endswith(DELIMITER):
            data = data[:-1]
        if DELIMITER in data:
            raise BadCobsError("0x00 inside a COBS block")
        if len(data) > max_encoded_size(max_frame):
            raise OversizeError(f"COBS block of {len(data)} bytes exceeds limit")
        return cls.from_raw(_cobs_decode(data), max_frame)


# The tuple constructor itself: the named tuple's generated __new__ is a Python function.
_new_frame = tuple.__new__


def _raw(header: bytes, payload: bytes) -> bytes:
    body = header + payload
    return body + _CRC.pack(crc32(body))


def encode_frame(
    version: int, msg_type: int, flags: int, seq: int, ack: int, *, payload: bytes
) -> bytes:
    """The wire form of a frame with these fields (``Frame(...).to_bytes()`` without building
    the ``Frame``: a link sends every frame through here)."""
    raw = _raw(_HEADER.pack(version, msg_type, flags, seq, ack), payload)
    return bytes(cobs.encode(raw)) + DELIMITER


def _cobs_decode(block: bytes) -> bytes:
    try:
        return bytes(cobs.decode(block))
    except cobs.DecodeError as exc:
        raise BadCobsError(str(exc)) from None


_FLAGS: tuple[FrameFlags, ...] = tuple(FrameFlags(i) for i in range(256))


@dataclass(slots=True)
class DecoderStats:
    """Why frames were dropped. Counters only grow."""

    frames: int = 0
    bad_cobs: int = 0
    too_short: int = 0
    oversize: int = 0
    bad_crc: int = 0
    #: Bytes thrown away while hunting for a delimiter after an oversize run.
    discarded_bytes: int = 0

    @property
    def dropped(self) -> int:
        return self.bad_cobs + self.too_short + self.oversize + self.bad_crc


@dataclass
class FrameDecoder:
    """Split a byte stream into frames. Feed it pieces of any size; it never raises.

    The buffer is bounded by the largest COBS block ``max_frame`` allows: a longer run without a
    delimiter is dropped (counted as ``oversize``) and bytes are skipped up to the next 0x00.
    """

    max_frame: int = MAX_FRAME_CEILING
    stats: DecoderStats = field(default_factory=DecoderStats)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _discarding: bool = field(default=False, repr=False)

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a delimiter."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a partial frame (e.g. after the transport reconnected). Stats are kept."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        limit = max_encoded_size(self.max_frame)
        start = 0
        end = len(data)
        while start < end:
            stop = data.find(0, start)
            if stop < 0:
                self._append_partial(data[start:], limit)
                break
            if self._discarding:
                self.stats.discarded_bytes += stop - start
                self._discarding = False
            elif self._buffer:
                self._buffer += data[start:stop]
                block = bytes(self._buffer)
                self._buffer.clear()
                self._decode_block(block, frames, limit)
            elif stop > start:
                self._decode_block(data[start:stop], frames, limit)
            start = stop + 1
        return frames

    def _append_partial(self, piece: bytes, limit: int) -> None:
        if self._discarding:
            self.stats.discarded_bytes += len(piece)
            return
        if len(self._buffer) + len(piece) > limit:
            # No frame can be this long: drop it now so the buffer stays bounded.
            self.stats.oversize += 1
            self.stats.discarded_bytes += len(self._buffer) + len(piece)
            self._buffer.clear()
            self._discarding = True
            return
        self._buffer += piece

    def _decode_block(self, block: bytes, frames: list[Frame], limit: int) -> None:
        if len(block) > limit:
            self.stats.oversize += 1
            return
        try:
            # The block holds no 0x00 and fits the limit: skip from_bytes' checks.
            frame = Frame.from_raw(_cobs_decode(block), self.max_frame)
        except BadCobsError:
            self.stats.bad_cobs += 1
        except TooShortError:
            self.stats.too_short += 1
        except OversizeError:
            self.stats.oversize += 1
        except BadCrcError:
            self.stats.bad_crc += 1
        except FramingError:  # pragma: no cover - every subclass is handled above
            self.stats.bad_cobs += 1
        else:
            self.stats.frames += 1
            frames.append(frame)
