"""Messages: every type round-trips; decoding validates and names the offending field."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings

from firmware_protocol import (
    MESSAGE_CLASSES,
    FieldError,
    MalformedPayloadError,
    Message,
    StartTask,
    TaskOutput,
    UnknownMessageTypeError,
    frame_for,
    parse,
    parse_payload,
)
from firmware_protocol.framing import Frame

from .strategies import for_struct, messages

FAST = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(messages())
def test_every_message_round_trips(message: Message) -> None:
    assert type(message).from_bytes(message.to_bytes()) == message
    frame = frame_for(message, seq=7, ack=9)
    assert parse(Frame.from_bytes(frame.to_bytes())) == message


@pytest.mark.parametrize("cls", list(MESSAGE_CLASSES.values()), ids=lambda c: c.__name__)
def test_each_type_round_trips(cls: type[Message]) -> None:
    @settings(deadline=None, max_examples=25)
    @given(for_struct(cls))
    def check(message: Message) -> None:
        assert parse_payload(cls.TYPE, message.to_bytes()) == message

    check()


def test_unknown_keys_are_ignored() -> None:
    raw = StartTask(1, "t", "blink").to_wire()
    raw[99] = "from the future"
    assert StartTask.from_bytes(msgpack.packb(raw)) == StartTask(1, "t", "blink")


def test_unknown_type() -> None:
    with pytest.raises(UnknownMessageTypeError) as info:
        parse_payload(0x7E, b"\x80")
    assert info.value.msg_type == 0x7E


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({1: "t", 2: "blink"}, "request_id"),
        ({0: 0, 1: "t", 2: "blink"}, "request_id"),
        ({0: 1, 1: 5, 2: "blink"}, "task_id"),
        ({0: 1, 1: "t", 2: "blink", 3: ["x"] * 33}, "argv"),
        ({0: 1, 1: "t", 2: "blink", 3: ["x" * 256]}, "argv"),
        ({0: 1, 1: "t", 2: "blink", 4: {"": "v"}}, "env"),
        ({0: True, 1: "t", 2: "blink"}, "request_id"),
    ],
)
def test_field_errors_name_the_field(payload: dict[int, object], field: str) -> None:
    with pytest.raises(FieldError) as info:
        StartTask.from_bytes(msgpack.packb(payload))
    assert info.value.field == field
    assert info.value.message_name == "StartTask"


def test_nested_and_enum_errors() -> None:
    with pytest.raises(FieldError) as info:
        TaskOutput.from_bytes(msgpack.packb({1: "t", 2: 3, 3: 0, 4: b""}))
    assert info.value.field == "stream"


@pytest.mark.parametrize("payload", [b"", b"\xc1", b"\x91\x01", b"\x80\x80", b"\xa1\xff"])
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(MalformedPayloadError):
        StartTask.from_bytes(payload)
