"""Serial-number arithmetic on u16 sequence numbers (RFC 1982 style)."""

from __future__ import annotations

from .constants import SEQ_MODULO

_HALF = SEQ_MODULO // 2


def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MODULO


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b, in -32768..32767: negative means a is older than b."""
    return (a - b + _HALF) % SEQ_MODULO - _HALF
