"""Typed, size-checked conversion between Python values and msgpack values.

Each message field declares a ``Codec`` (in its dataclass metadata); decoding validates types and
limits and raises ``FieldError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


class FieldProblem(Exception):
    """Raised by a codec; the message layer wraps it into ``FieldError`` with the names."""


class Codec(Generic[T]):
    """Converts one field between its Python value and its msgpack value."""

    def encode(self, value: T) -> Any:
        return value

    def decode(self, raw: Any) -> T:
        raise NotImplementedError


@dataclass(frozen=True)
class UInt(Codec[int]):
    maximum: int = _U32_MAX

    def decode(self, raw: Any) -> int:
        if type(raw) is not int:  # bool is an int subclass: refuse it explicitly
            raise FieldProblem(f"expected unsigned integer, got {type(raw).__name__}")
        if not 0 <= raw <= self.maximum:
            raise FieldProblem(f"{raw} outside 0..{self.maximum}")
        return raw


U8 = UInt(255)
U16 = UInt(0xFFFF)
U32 = UInt(_U32_MAX)
U64 = UInt(_U64_MAX)


@dataclass(frozen=True)
class SInt(Codec[int]):
    def decode(self, raw: Any) -> int:
        if type(raw) is not int:
            raise FieldProblem(f"expected integer, got {type(raw).__name__}")
        if not _I64_MIN <= raw <= _I64_MAX:
            raise FieldProblem(f"{raw} outside int64")
        return raw


I64 = SInt()


@dataclass(frozen=True)
class Bool(Codec[bool]):
    def decode(self, raw: Any) -> bool:
        if type(raw) is not bool:
            raise FieldProblem(f"expected bool, got {type(raw).__name__}")
        return raw


BOOL = Bool()


@dataclass(frozen=True)
class Str(Codec[str]):
    """UTF-8 text; the limit counts encoded bytes."""

    max_bytes: int
    allow_empty: bool = True

    def decode(self, raw: Any) -> str:
        if type(raw) is not str:
            raise FieldProblem(f"expected str, got {type(raw).__name__}")
        self.check(raw)
        return raw

    def check(self, value: str) -> None:
        # ASCII is the common case and needs no encoding to count bytes.
        size = len(value) if value.isascii() else self._utf8_size(value)
        if size > self.max_bytes:
            raise FieldProblem(f"{size} bytes exceeds {self.max_bytes}")
        if not self.allow_empty and not value:
            raise FieldProblem("must not be empty")

    @staticmethod
    def _utf8_size(value: str) -> int:
        try:
            return len(value.encode("utf-8"))
        except UnicodeEncodeError:
            # The unpacker maps invalid UTF-8 to surrogates so we can name the field here.
            raise FieldProblem("invalid UTF-8") from None


@dataclass(frozen=True)
class Bin(Codec[bytes]):
    max_bytes: int

    def decode(self, raw: Any) -> bytes:
        if type(raw) is not bytes:
            raise FieldProblem(f"expected bin, got {type(raw).__name__}")
        if len(raw) > self.max_bytes:
            raise FieldProblem(f"{len(raw)} bytes exceeds {self.max_bytes}")
        return raw


@dataclass(frozen=True)
class Seq(Codec[tuple[T, ...]]):
    """A msgpack array decoded into a tuple."""

    item: Codec[T]
    max_items: int
    min_items: int = 0

    def encode(self, value: tuple[T, ...]) -> Any:
        return [self.item.encode(v) for v in value]

    def decode(self, raw: Any) -> tuple[T, ...]:
        if type(raw) is not list:
            raise FieldProblem(f"expected array, got {type(raw).__name__}")
        if not self.min_items <= len(raw) <= self.max_items:
            raise FieldProblem(f"{len(raw)} items outside {self.min_items}..{self.max_items}")
        out = []
        for index, item in enumerate(raw):
            try:
                out.append(self.item.decode(item))
            except FieldProblem as exc:
                raise FieldProblem(f"[{index}]: {exc}") from None
        return tuple(out)


@dataclass(frozen=True)
class StrPairs(Codec[tuple[tuple[str, str], ...]]):
    """A msgpack map of str to str, kept as ordered pairs so the dataclass stays immutable."""

    key: Str
    value: Str
    max_items: int

    def encode(self, value: tuple[tuple[str, str], ...]) -> Any:
        return dict(value)

    def decode(self, raw: Any) -> tuple[tuple[str, str], ...]:
        if type(raw) is not dict:
            raise FieldProblem(f"expected map, got {type(raw).__name__}")
        if len(raw) > self.max_items:
            raise FieldProblem(f"{len(raw)} entries exceeds {self.max_items}")
        pairs = []
        for k, v in raw.items():
            try:
                pairs.append((self.key.decode(k), self.value.decode(v)))
            except FieldProblem as exc:
                raise FieldProblem(f"[{k!r}]: {exc}") from None
        return tuple(pairs)


@dataclass(frozen=True)
class Optional(Codec[T | None]):
    """A value or msgpack nil."""

    inner: Codec[T]

    def encode(self, value: T | None) -> Any:
        return None if value is None else self.inner.encode(value)

    def decode(self, raw: Any) -> T | None:
        return None if raw is None else self.inner.decode(raw)


@dataclass(frozen=True)
class WireField:
    """Metadata attached to a dataclass field: its map key and codec.

    ``omit_default``: the key is left out of the map when the value equals the field's default
    (for keys added later, so messages that do not use them keep their original bytes)."""

    key: int
    codec: Codec[Any]
    omit_default: bool = False


def wire(key: int, codec: Codec[Any], *, omit_default: bool = False) -> dict[str, WireField]:
    """Dataclass field metadata: ``field(metadata=wire(1, U32))``."""
    return {"wire": WireField(key, codec, omit_default)}
