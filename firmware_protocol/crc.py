"""CRC-32 used in every frame trailer.

Parameters (CRC-32/ISO-HDLC, as zlib, Ethernet and most MCU CRC units): width 32, poly 0x04C11DB7,
init 0xFFFFFFFF, reflected in and out, xorout 0xFFFFFFFF, check("123456789") = 0xCBF43926.
crcmod's ``crc-32`` predefined function uses its C extension.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import crcmod.predefined

CRC32_CHECK: Final[int] = 0xCBF43926

crc32: Final[Callable[[bytes], int]] = crcmod.predefined.mkPredefinedCrcFun("crc-32")

if crc32(b"123456789") != CRC32_CHECK:  # pragma: no cover - guards a mis-pinned crcmod
    raise ImportError("crcmod crc-32 does not match the pinned check value")
