"""Hypothesis strategies derived from the message schemas, so every field of every message
type is exercised without a hand-written strategy per message."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from firmware_protocol import (
    MAX_FRAME_CEILING,
    MESSAGE_CLASSES,
    MIN_FRAME,
    Frame,
    FrameFlags,
    Message,
)
from firmware_protocol.fields import (
    Bin,
    Bool,
    Codec,
    Optional,
    Seq,
    SInt,
    Str,
    StrPairs,
    UInt,
)
from firmware_protocol.messages import (
    EnumCodec,
    FrameLimit,
    Nested,
    NonZeroU32,
    WindowSize,
    WireStruct,
    wire_specs,
)


def _utf8_fits(limit: int) -> Any:
    return lambda s: len(s.encode("utf-8")) <= limit


def for_codec(codec: Codec[Any]) -> st.SearchStrategy[Any]:  # noqa: PLR0912 (one branch per codec kind)
    if isinstance(codec, FrameLimit):
        return st.integers(MIN_FRAME, MAX_FRAME_CEILING)
    if isinstance(codec, WindowSize):
        return st.integers(1, 64)
    if isinstance(codec, NonZeroU32):
        return st.integers(1, 2**32 - 1)
    if isinstance(codec, EnumCodec):
        return st.sampled_from(list(codec.enum))
    if isinstance(codec, UInt):
        return st.integers(0, codec.maximum)
    if isinstance(codec, SInt):
        return st.integers(-(2**63), 2**63 - 1)
    if isinstance(codec, Bool):
        return st.booleans()
    if isinstance(codec, Str):
        text = st.text(min_size=0 if codec.allow_empty else 1, max_size=codec.max_bytes)
        return text.filter(_utf8_fits(codec.max_bytes))
    if isinstance(codec, Bin):
        return st.binary(max_size=min(codec.max_bytes, 300))
    if isinstance(codec, Seq):
        items = st.lists(
            for_codec(codec.item), min_size=codec.min_items, max_size=min(codec.max_items, 4)
        )
        return items.map(tuple)
    if isinstance(codec, StrPairs):
        pairs = st.dictionaries(
            for_codec(codec.key), for_codec(codec.value), max_size=min(codec.max_items, 4)
        )
        return pairs.map(lambda d: tuple(d.items()))
    if isinstance(codec, Optional):
        return st.none() | for_codec(codec.inner)
    if isinstance(codec, Nested):
        return for_struct(codec.cls)
    raise TypeError(f"no strategy for {codec!r}")


def for_struct(cls: type[WireStruct]) -> st.SearchStrategy[Any]:
    kwargs = {spec.name: for_codec(spec.codec) for spec in wire_specs(cls)}
    return st.builds(cls, **kwargs)


def messages() -> st.SearchStrategy[Message]:
    return st.one_of([for_struct(cls) for cls in MESSAGE_CLASSES.values()])


def frames() -> st.SearchStrategy[Frame]:
    return st.builds(
        Frame,
        version=st.integers(0, 255),
        type=st.integers(0, 255),
        flags=st.integers(0, 255).map(FrameFlags),
        seq=st.integers(0, 0xFFFF),
        ack=st.integers(0, 0xFFFF),
        payload=st.binary(max_size=600),
    )
