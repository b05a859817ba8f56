"""Golden vectors: the code reproduces every file byte-exactly, and every vector holds when
read back as plain data (as an implementation in another language would use it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from firmware_protocol import (
    MESSAGE_CLASSES,
    FieldError,
    Frame,
    FrameDecoder,
    MessageError,
    UnknownMessageTypeError,
    parse,
)
from firmware_protocol.crc import crc32
from firmware_protocol.vectors_gen import BEGIN, SPEC, VECTORS, generate, render_spec, to_json


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def test_files_are_reproduced_byte_exactly() -> None:
    for name, text in generate().items():
        assert (VECTORS / name).read_text() == text, f"{name} is stale: run vectors_gen"


def test_worked_example_in_spec_is_current() -> None:
    text = SPEC.read_text()
    assert BEGIN in text
    assert render_spec(text) == text, "PROTOCOL.md example is stale: run vectors_gen"


def test_crc_vectors() -> None:
    data = load("crc.json")
    assert f"{crc32(b'123456789'):08x}" == data["check"]
    for v in data["vectors"]:
        assert f"{crc32(bytes.fromhex(v['data_hex'])):08x}" == v["crc32"]


MESSAGE_VECTORS = load("messages.json")["vectors"]


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v["name"])
def test_message_vector(vector: dict[str, Any]) -> None:
    f = vector["frame"]
    wire = bytes.fromhex(f["wire_hex"])
    frame = Frame.from_bytes(wire)
    assert (frame.version, frame.type, int(frame.flags), frame.seq, frame.ack) == (
        f["version"],
        f["type"],
        f["flags"],
        f["seq"],
        f["ack"],
    )
    assert frame.payload.hex() == f["payload_hex"]
    assert frame.raw().hex() == f["raw_hex"]
    message = parse(frame)
    assert to_json(message) == vector["message"]
    assert message.to_bytes().hex() == f["payload_hex"]
    assert frame.to_bytes() == wire


def test_every_message_type_has_a_vector() -> None:
    covered = {v["frame"]["type"] for v in MESSAGE_VECTORS}
    assert covered == set(MESSAGE_CLASSES)


STREAM_VECTORS = load("streams.json")["vectors"]


@pytest.mark.parametrize("vector", STREAM_VECTORS, ids=lambda v: v["name"])
def test_stream_vector(vector: dict[str, Any]) -> None:
    decoder = FrameDecoder(max_frame=vector["max_frame"])
    frames = decoder.feed(bytes.fromhex(vector["wire_hex"]))
    expect = vector["expect"]
    assert [f.raw().hex() for f in frames] == expect["frames"]
    s = decoder.stats
    got = (s.bad_cobs, s.too_short, s.oversize, s.bad_crc)
    assert got == (expect["bad_cobs"], expect["too_short"], expect["oversize"], expect["bad_crc"])


def test_every_decoder_drop_reason_has_a_vector() -> None:
    for counter in ("bad_cobs", "too_short", "oversize", "bad_crc"):
        assert any(v["expect"][counter] for v in STREAM_VECTORS), counter


INVALID_VECTORS = load("invalid_messages.json")["vectors"]


@pytest.mark.parametrize("vector", INVALID_VECTORS, ids=lambda v: v["name"])
def test_invalid_message_vector(vector: dict[str, Any]) -> None:
    frame = Frame.from_bytes(bytes.fromhex(vector["frame"]["wire_hex"]))
    expect = vector["expect"]
    with pytest.raises(MessageError) as info:
        parse(frame)
    kind = {
        UnknownMessageTypeError: "unknown_type",
        FieldError: "field",
    }.get(type(info.value), "malformed")
    assert kind == expect["error"]
    if isinstance(info.value, FieldError):
        assert info.value.field == expect["field"]


def test_every_message_error_kind_has_a_vector() -> None:
    assert {v["expect"]["error"] for v in INVALID_VECTORS} == {"unknown_type", "malformed", "field"}


def test_exchange_vectors_decode() -> None:
    data = load("exchanges.json")
    for entry in [*data["handshake"], *data["start_output_exit"]]:
        frames = FrameDecoder().feed(bytes.fromhex(entry["wire_hex"]))
        assert len(frames) == 1
        assert to_json(parse(frames[0])) == entry["message"]


def test_vectors_directory_has_only_generated_files() -> None:
    assert {p.name for p in Path(VECTORS).glob("*.json")} == set(generate())


def test_paging_vectors_list_the_whole_table_in_frames_that_fit() -> None:
    data = load("paging.json")
    cursor = 0
    listed = []
    for page in data["pages"]:
        request = parse(Frame.from_bytes(bytes.fromhex(page["request_frame"]["wire_hex"])))
        reply_frame = Frame.from_bytes(bytes.fromhex(page["reply_frame"]["wire_hex"]))
        reply = parse(reply_frame)
        assert to_json(request) == page["request"] and to_json(reply) == page["reply"]
        assert len(reply_frame.raw()) <= data["max_frame"]
        assert page["request"].get("cursor", 0) == cursor
        assert reply.request_id == request.request_id  # type: ignore[attr-defined]
        listed += page["reply"]["tasks"]
        if "next_cursor" in page["reply"]:
            assert page["reply"]["next_cursor"] > cursor and page["reply"]["tasks"]
            cursor = page["reply"]["next_cursor"]
        else:
            assert page is data["pages"][-1]
    assert len(data["pages"]) > 1
    assert listed == [t for t in data["table"] if t is not None]


def test_keys_added_later_are_left_out_at_their_default() -> None:
    by_name = {v["name"]: v for v in MESSAGE_VECTORS}
    assert by_name["list_tasks"]["frame"]["payload_hex"] == "810003"  # as before paging
    assert "cursor" not in by_name["list_tasks"]["message"]
    assert by_name["list_tasks_cursor"]["message"]["cursor"] == 2
    assert "next_cursor" not in by_name["task_list"]["message"]
    assert by_name["task_list_page"]["message"]["next_cursor"] == 2
