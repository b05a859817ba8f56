"""Generate src/wl_schema.c (the C library's message field tables) from the Python catalogue.

The C library validates every message exactly as the reference does: same keys, types, limits and
required fields. Generating its tables from `firmware_protocol.messages` keeps the two from
drifting; `tests/clib` fails if the checked-in file is stale.

    python firmware_protocol/c/gen_schema.py          # rewrite src/wl_schema.c
    python firmware_protocol/c/gen_schema.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from firmware_protocol import constants as c
from firmware_protocol import fields as f
from firmware_protocol import messages as m

OUTPUT = Path(__file__).parent / "src" / "wl_schema.c"
# Highest map key the C decoder indexes (WL_MAX_KEY in src/wl_internal.h).
WL_MAX_KEY = 17

_UINT_KINDS = {
    0xFF: "WL_K_U8",
    0xFFFF: "WL_K_U16",
    0xFFFFFFFF: "WL_K_U32",
    (1 << 64) - 1: "WL_K_U64",
}


class _Row:
    def __init__(self, key: int, name: str, required: bool) -> None:
        self.key = key
        self.name = name
        self.kind = ""
        self.flags = ["WL_F_REQUIRED"] if required else []
        self.item_max = 0
        self.lo = 0
        self.hi = 0
        self.sub = "NULL"


def _describe(row: _Row, codec: f.Codec, nested: list[type]) -> None:  # type: ignore[type-arg]  # noqa: PLR0912, PLR0915 (one branch per codec kind, as in the schema)
    if isinstance(codec, f.Optional):
        row.flags.append("WL_F_NULLABLE")
        _describe(row, codec.inner, nested)
    elif isinstance(codec, m.NonZeroU32):
        row.kind = "WL_K_U32"
        row.flags.append("WL_F_NONZERO")
    elif isinstance(codec, m.FrameLimit):
        row.kind, row.lo, row.hi = "WL_K_RANGE", c.MIN_FRAME, c.MAX_FRAME_CEILING
    elif isinstance(codec, m.WindowSize):
        row.kind, row.lo, row.hi = "WL_K_RANGE", 1, c.MAX_WINDOW
    elif isinstance(codec, m.EnumCodec):
        values = sorted(int(v) for v in codec.enum)
        assert values == list(range(values[0], values[-1] + 1)), codec.enum
        row.kind, row.lo, row.hi = "WL_K_RANGE", values[0], values[-1]
    elif isinstance(codec, f.UInt):
        if codec.maximum in _UINT_KINDS:
            row.kind = _UINT_KINDS[codec.maximum]
        else:
            row.kind, row.lo, row.hi = "WL_K_RANGE", 0, codec.maximum
    elif isinstance(codec, f.SInt):
        row.kind = "WL_K_I64"
    elif isinstance(codec, f.Bool):
        row.kind = "WL_K_BOOL"
    elif isinstance(codec, f.Str):
        row.kind, row.hi = "WL_K_STR", codec.max_bytes
        if not codec.allow_empty:
            row.flags.append("WL_F_NONEMPTY")
    elif isinstance(codec, f.Bin):
        row.kind, row.hi = "WL_K_BIN", codec.max_bytes
    elif isinstance(codec, f.Seq):
        row.lo, row.hi = codec.min_items, codec.max_items
        item = codec.item
        if isinstance(item, f.UInt):
            assert item.maximum == 0xFF, item
            row.kind = "WL_K_ARR_U8"
        elif isinstance(item, f.Str):
            row.kind, row.item_max = "WL_K_ARR_STR", item.max_bytes
            if not item.allow_empty:
                row.flags.append("WL_F_NONEMPTY")
        elif isinstance(item, m.Nested):
            row.kind, row.sub = "WL_K_ARR_MAP", f"&wl_s_{item.cls.__name__}"
            nested.append(item.cls)
        else:
            raise TypeError(f"{row.name}: no C kind for a sequence of {item!r}")
    elif isinstance(codec, f.StrPairs):
        assert codec.key.max_bytes == codec.value.max_bytes
        assert not codec.key.allow_empty and codec.value.allow_empty
        row.kind, row.hi, row.item_max = "WL_K_ENV", codec.max_items, codec.key.max_bytes
        row.flags.append("WL_F_NONEMPTY")
    elif isinstance(codec, m.Nested):
        row.kind, row.sub = "WL_K_MAP", f"&wl_s_{codec.cls.__name__}"
        nested.append(codec.cls)
    else:
        raise TypeError(f"{row.name}: no C kind for {codec!r}")


def _senders(cls: type) -> str:
    senders = getattr(cls, "SENDERS", frozenset(c.Role))
    parts = []
    if c.Role.DEVICE in senders:
        parts.append("WL_BY_DEVICE")
    if c.Role.GATEWAY in senders:
        parts.append("WL_BY_GATEWAY")
    return " | ".join(parts)


def generate() -> str:
    names: dict[str, None] = {}
    blocks: list[str] = []
    done: set[type] = set()

    def emit(cls: type) -> None:
        if cls in done:
            return
        rows: list[_Row] = []
        nested: list[type] = []
        for spec in m.wire_specs(cls):
            assert spec.key <= WL_MAX_KEY, (cls, spec.key)
            row = _Row(spec.key, spec.name, spec.required)
            _describe(row, spec.codec, nested)
            rows.append(row)
            names[spec.name] = None
        for sub in nested:
            emit(sub)
        names[cls.__name__] = None
        done.add(cls)
        table = "NULL"
        if rows:
            table = f"wl_f_{cls.__name__}"
            lines = [f"static const wl_field {table}[] WL_ROM = {{"]
            for r in rows:
                flags = " | ".join(r.flags) or "0"
                lines.append(
                    f"    {{{r.key}, {r.kind}, {flags}, {r.item_max}, {r.lo}, {r.hi},"
                    f" wl_n_{r.name}, {r.sub}}},"
                )
            lines.append("};")
            blocks.append("\n".join(lines))
        blocks.append(
            f"static const wl_schema wl_s_{cls.__name__} WL_ROM = {{wl_n_{cls.__name__}, {table},"
            f" {len(rows)}, {_senders(cls)}}};"
        )

    classes = sorted(m.MESSAGE_CLASSES.items())
    for _, cls in classes:
        emit(cls)
    for extra in (m.TaskInfo, m.Load, m.TaskLoad):
        emit(extra)
    out = [
        "/* GENERATED by firmware_protocol/c/gen_schema.py from firmware_protocol/messages.py:",
        " * do not edit. Field tables of every message, checked as the reference does. */",
        '#include "wl_internal.h"',
        "",
    ]
    out += [f'static const char wl_n_{n}[] WL_ROM = "{n}";' for n in names]
    out.append("")
    out += [b + "\n" for b in blocks]
    out.append("const wl_schema *wl_schema_for(uint8_t type)\n{\n    switch (type) {")
    for number, cls in classes:
        out.append(f"    case 0x{number:02x}: return &wl_s_{cls.__name__};")
    out.append("    default: return NULL;\n    }\n}\n")
    out.append("const wl_schema *wl_schema_named(const char *name)\n{")
    out.append("    /* Host conformance helpers only: nested structures by name. */")
    for extra in (m.TaskInfo, m.Load, m.TaskLoad):
        n = extra.__name__
        out.append(f"    if (wl_rom_streq(wl_n_{n}, name)) return &wl_s_{n};")
    out.append("    return NULL;\n}")
    return "\n".join(out) + "\n"


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
