"""CRC-32 used in every frame trailer.

Parameters (CRC-32/ISO-HDLC, as zlib, Ethernet and most MCU CRC units): width 32, poly 0x04C11DB7,
init 0xFFFFFFFF, reflected in and out, xorout 0xFFFFFFFF, check("123456789") = 0xCBF43926.
That is zlib's ``crc32``: one C call per frame (a table-driven Python wrapper around a C core,
as crcmod's, costs four times as much on the heartbeat path of 1000 devices).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Final

CRC32_CHECK: Final[int] = 0xCBF43926

crc32: Final[Callable[[bytes], int]] = zlib.crc32

if crc32(b"123456789") != CRC32_CHECK:  # pragma: no cover - guards a foreign zlib
    raise ImportError("zlib.crc32 does not match the pinned check value")
