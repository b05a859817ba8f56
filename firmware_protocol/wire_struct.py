"""Frozen dataclasses <-> msgpack maps with integer keys: the machinery under the message catalogue.

A field declares its map key and codec with ``fields.wire(key, codec)``; ``wire_specs(cls)``
lists them, ``WireStruct.to_wire()`` / ``from_wire(raw)`` convert through per-class plans built
once (the decode loop is the TASK_OUTPUT hot path). ``Nested`` and ``EnumCodec`` are the codecs
for a nested structure and an IntEnum. The catalogue itself is in ``messages``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Self

import msgpack

from .errors import FieldError, MalformedPayloadError
from .fields import U8, Codec, FieldProblem, WireField


@dataclass(frozen=True)
class EnumCodec(Codec[Any]):
    """An integer restricted to an IntEnum's members."""

    enum: type[IntEnum]

    def encode(self, value: Any) -> Any:
        return int(value)

    def decode(self, raw: Any) -> Any:
        # A dict lookup: calling the enum class is slow on the TASK_OUTPUT hot path.
        member = self._members().get(raw) if type(raw) is int else None
        if member is None:
            value = U8.decode(raw)
            raise FieldProblem(f"{value} is not a known {self.enum.__name__}")
        return member

    def _members(self) -> dict[int, IntEnum]:
        members = _ENUM_MEMBERS.get(self.enum)
        if members is None:
            members = _ENUM_MEMBERS[self.enum] = {int(m): m for m in self.enum}
        return members


_ENUM_MEMBERS: dict[type[IntEnum], dict[int, IntEnum]] = {}


@dataclass(frozen=True)
class WireSpec:
    name: str
    key: int
    codec: Codec[Any]
    required: bool
    #: Left out of the encoded map when equal to `default` (keys added after version 1).
    omit_default: bool = False
    default: Any = None


_WIRE_SPEC_CACHE: dict[type, tuple[WireSpec, ...]] = {}


def wire_specs(cls: type) -> tuple[WireSpec, ...]:
    cached = _WIRE_SPEC_CACHE.get(cls)
    if cached is not None:
        return cached
    specs = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("wire")
        if isinstance(meta, WireField):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if meta.omit_default and required:
                raise TypeError(f"{cls.__name__}.{f.name}: omit_default needs a default")
            specs.append(
                WireSpec(f.name, meta.key, meta.codec, required, meta.omit_default, f.default)
            )
    result = tuple(sorted(specs, key=lambda s: s.key))
    _WIRE_SPEC_CACHE[cls] = result
    return result


class WireStruct:
    """Shared map <-> dataclass conversion for messages and nested structures."""

    def to_wire(self) -> dict[int, Any]:
        cls = type(self)
        wired = {key: encode(getattr(self, name)) for key, name, encode in _encode_plan(cls)}
        for key, name, default in _omit_plan(cls):
            if getattr(self, name) == default:
                del wired[key]
        return wired

    @classmethod
    def from_wire(cls, raw: Any) -> Self:
        if type(raw) is not dict:
            name = cls.__name__
            raise MalformedPayloadError(f"{name}: expected a map, got {type(raw).__name__}")
        values: dict[str, Any] = {}
        for key, name, decode, required in _decode_plan(cls):
            value = raw.get(key, _ABSENT)
            if value is _ABSENT:
                if required:
                    raise FieldError(cls.__name__, name, "missing")
                continue
            try:
                values[name] = decode(value)
            except FieldProblem as exc:
                raise FieldError(cls.__name__, name, str(exc)) from None
        return cls(**values)


_EncodePlan = tuple[tuple[int, str, Callable[[Any], Any]], ...]
_ENCODE_PLANS: dict[type, _EncodePlan] = {}


def _encode_plan(cls: type) -> _EncodePlan:
    """Per-class (key, name, bound encode) tuples in ascending key order."""
    plan = _ENCODE_PLANS.get(cls)
    if plan is None:
        plan = tuple((s.key, s.name, s.codec.encode) for s in wire_specs(cls))
        _ENCODE_PLANS[cls] = plan
    return plan


_OmitPlan = tuple[tuple[int, str, Any], ...]
_OMIT_PLANS: dict[type, _OmitPlan] = {}


def _omit_plan(cls: type) -> _OmitPlan:
    """Per-class (key, name, default) of keys left out when they hold their default."""
    plan = _OMIT_PLANS.get(cls)
    if plan is None:
        plan = tuple((s.key, s.name, s.default) for s in wire_specs(cls) if s.omit_default)
        _OMIT_PLANS[cls] = plan
    return plan


_ABSENT = object()
_DecodePlan = tuple[tuple[int, str, Callable[[Any], Any], bool], ...]
_DECODE_PLANS: dict[type, _DecodePlan] = {}


def _decode_plan(cls: type) -> _DecodePlan:
    """Per-class (key, name, bound decode, required) tuples: the decode hot loop."""
    plan = _DECODE_PLANS.get(cls)
    if plan is None:
        plan = tuple((s.key, s.name, s.codec.decode, s.required) for s in wire_specs(cls))
        _DECODE_PLANS[cls] = plan
    return plan


@dataclass(frozen=True)
class Nested(Codec[Any]):
    """A nested map decoded into another ``WireStruct`` dataclass."""

    cls: type[WireStruct]

    def encode(self, value: Any) -> Any:
        return value.to_wire()

    def decode(self, raw: Any) -> Any:
        try:
            return self.cls.from_wire(raw)
        except FieldError as exc:
            raise FieldProblem(f"{exc.field}: {exc.reason}") from None
        except MalformedPayloadError as exc:
            raise FieldProblem(str(exc)) from None


def unpack_map(name: str, payload: bytes) -> Any:
    """Decode a msgpack payload for ``WireStruct.from_wire``; ``name`` says whose, in errors."""
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            use_list=True,
            unicode_errors="surrogateescape",
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedPayloadError(f"{name}: not msgpack ({type(exc).__name__})") from None
