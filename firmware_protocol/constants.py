"""Protocol-wide constants: versions, header layout and hard limits.

These are normative (see PROTOCOL.md); tunable timing lives in ``LinkConfig``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

#: Protocol versions this implementation speaks, newest first.
SUPPORTED_VERSIONS: Final[tuple[int, ...]] = (1,)
#: The version this implementation prefers.
PROTOCOL_VERSION: Final[int] = SUPPORTED_VERSIONS[0]
#: Pre-link frames (HELLO, WELCOME, REFUSE, HELLO_REQUEST) always carry this header version so
#: that two implementations with no common version can still tell each other so.
HANDSHAKE_HEADER_VERSION: Final[int] = 1

#: Header: version u8, type u8, flags u8, seq u16 BE, ack u16 BE.
HEADER_SIZE: Final[int] = 7
#: CRC-32 trailer, big-endian.
CRC_SIZE: Final[int] = 4
FRAME_OVERHEAD: Final[int] = HEADER_SIZE + CRC_SIZE

#: Sequence numbers are u16 and compared with serial-number arithmetic (RFC 1982).
SEQ_MODULO: Final[int] = 1 << 16
#: A window must stay below half the sequence space for serial arithmetic to be unambiguous.
MAX_WINDOW: Final[int] = 64

#: Optional protocol features, a bitmask: offered in HELLO ``features``, accepted in WELCOME
#: ``features`` (a subset of the offer). Unknown bits are ignored, so old peers simply do not
#: use them (PROTOCOL.md section 10).
#: TASK_HANDLES: the device names a task by a one-byte handle in TASK_DATA frames, after a
#: TASK_OUTPUT of this session bound the handle to the task id (PROTOCOL.md section 4).
FEATURE_TASK_HANDLES: Final[int] = 0x1
#: Every feature this implementation speaks.
SUPPORTED_FEATURES: Final[int] = FEATURE_TASK_HANDLES
#: Task handles are 0..MAX_TASK_HANDLE (one msgpack byte each).
MAX_TASK_HANDLE: Final[int] = 127

#: Smallest "largest receivable frame" a peer may declare (header + payload + CRC, before COBS).
#: Every message with a bounded size must fit it: the largest is a TASK_EXITED with a 48-byte task
#: id and a 64-byte reason (166 bytes); a TASK_LIST page with one maximal TaskInfo needs 145.
#: Was 128 before task-list paging, which no maximal TASK_EXITED fitted.
MIN_FRAME: Final[int] = 192
#: Largest frame any peer may declare. CRC-32 keeps Hamming distance 4 up to ~11 KB.
MAX_FRAME_CEILING: Final[int] = 4096
#: Default largest frame for a small device (fits the 4 KB RAM budget in PROTOCOL.md).
DEFAULT_MAX_FRAME: Final[int] = 512

# Field limits (bytes of UTF-8 unless stated). Receivers reject larger values with FieldError.
MAX_DEVICE_ID: Final[int] = 64
MAX_NAME: Final[int] = 32  # app names, firmware name
MAX_FIRMWARE_VERSION: Final[int] = 32
MAX_APPS: Final[int] = 32
MAX_TASK_ID: Final[int] = 48
MAX_ARGS: Final[int] = 32  # argv entries
MAX_ENV: Final[int] = 32  # env entries
MAX_ARG: Final[int] = 255  # one argv entry, env key or env value
MAX_TASK_SLOTS: Final[int] = 255
MAX_REASON: Final[int] = 64
MAX_TEXT: Final[int] = 255  # DEVICE_LOG line, ERROR message
MAX_VERSIONS: Final[int] = 16
MAX_TASKS_LISTED: Final[int] = MAX_TASK_SLOTS
MAX_BYTES_FIELD: Final[int] = MAX_FRAME_CEILING  # output/exec data; the frame limit binds first


class Role(StrEnum):
    """Which end of the link an implementation plays."""

    GATEWAY = "gateway"
    DEVICE = "device"
