"""The C device library against every golden vector in firmware_protocol/vectors/: CRC, stream
framing (frames and drop counters), every message decoded to the vector's fields and encoded to
its exact bytes, every invalid message rejected with the vector's code and field."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from firmware_protocol import MESSAGE_CLASSES
from firmware_protocol.vectors_gen import VECTORS, to_json

from .clib import C_DIR, Library


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def strip_types(value: Any) -> Any:
    """Vector messages name nested structures' types; the C decoder reports fields only."""
    if isinstance(value, dict):
        return {k: strip_types(v) for k, v in value.items() if k != "type"}
    if isinstance(value, list):
        return [strip_types(v) for v in value]
    return value


def test_crc_vectors(library: Library) -> None:
    data = load("crc.json")
    assert f"{library.crc32(b'123456789'):08x}" == data["check"]
    for v in data["vectors"]:
        assert f"{library.crc32(bytes.fromhex(v['data_hex'])):08x}" == v["crc32"]


@pytest.mark.parametrize("vector", load("streams.json")["vectors"], ids=lambda v: v["name"])
def test_stream_vector(library: Library, vector: dict[str, Any]) -> None:
    frames, counters = library.decode_stream(bytes.fromhex(vector["wire_hex"]), vector["max_frame"])
    expect = vector["expect"]
    assert [f.hex() for f in frames] == expect["frames"]
    for name in ("bad_cobs", "too_short", "oversize", "bad_crc"):
        assert counters[name] == expect[name], name


# Messages a device sends: the C library must produce their payloads byte for byte. (PONG with a
# load is built from figures the device measures; its structure is checked in test_device.)
DEVICE_SENT = {0x03, 0x05, 0x06, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x30}


@pytest.mark.parametrize("vector", load("messages.json")["vectors"], ids=lambda v: v["name"])
def test_message_vector(library: Library, vector: dict[str, Any]) -> None:
    f = vector["frame"]
    raw, payload = bytes.fromhex(f["raw_hex"]), bytes.fromhex(f["payload_hex"])
    # Frames in: the wire bytes decode to exactly this frame.
    frames, _ = library.decode_stream(bytes.fromhex(f["wire_hex"]), 4096)
    assert frames == [raw]
    # Frame out: header + payload gives the exact wire bytes (CRC, COBS, delimiter).
    assert library.frame_wire(raw[:-4]).hex() == f["wire_hex"]
    # Message in: every field as the vector has it; absent keys take the documented default.
    result = library.decode(f["type"], payload)
    assert result.code == 0, result.text
    decoded = json.loads(result.json)
    cls = MESSAGE_CLASSES[f["type"]]
    expected = strip_types({k: v for k, v in vector["message"].items() if k != "type"})
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in expected:
            continue
        if field.name in decoded:
            assert decoded[field.name] == expected[field.name], field.name
        else:
            assert field.default is not dataclasses.MISSING, f"{field.name} is required"
            default = field.default
            assert strip_types(to_json(default)) == expected[field.name], field.name
    # Message out: the device's own encoders give the same bytes.
    if f["type"] in DEVICE_SENT and vector["name"] != "pong_device_load":
        assert library.reencode(f["type"], payload) == payload


@pytest.mark.parametrize(
    "vector", load("invalid_messages.json")["vectors"], ids=lambda v: v["name"]
)
def test_invalid_message_vector(library: Library, vector: dict[str, Any]) -> None:
    f, expect = vector["frame"], vector["expect"]
    result = library.decode(f["type"], bytes.fromhex(f["payload_hex"]))
    assert result.code == expect["reply_code"], result.text
    if expect["error"] == "field":
        assert result.field == expect["field"], result.text
    else:
        assert result.field == ""


def test_c_schema_tables_are_generated_from_the_catalogue() -> None:
    """src/wl_schema.c is generated from firmware_protocol/messages.py: it must be current."""
    script = C_DIR / "gen_schema.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_paging_vector(library: Library) -> None:
    """The device's page builder answers every LIST_TASKS of paging.json with the same reply."""
    data = load("paging.json")
    for page in data["pages"]:
        request = page["request"]
        payload = library.task_list_page(
            request["request_id"], request.get("cursor", 0), data["max_frame"], data["table"]
        )
        assert payload.hex() == page["reply_frame"]["payload_hex"]
        assert len(payload) + 11 <= data["max_frame"]
