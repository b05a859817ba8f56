"""Exception tree of the wire protocol: one root, a subtree per concern.

Decoding never guesses: every failure names what was wrong (the field, the limit), so a
gateway can log it and answer the peer with a precise ERROR.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by ``firmware_protocol``."""


# --- framing: the bytes between two 0x00 delimiters -------------------------------------


class FramingError(ProtocolError):
    """A frame could not be recovered from the byte stream."""


class BadCobsError(FramingError):
    """The COBS block is not valid COBS (a code byte points past the end)."""


class TooShortError(FramingError):
    """The decoded frame is shorter than header + CRC."""


class OversizeError(FramingError):
    """The frame is larger than the receiver's limit."""


class BadCrcError(FramingError):
    """The CRC-32 over header and payload does not match."""


# --- messages: the msgpack payload of a frame --------------------------------------------


class MessageError(ProtocolError):
    """A frame arrived intact but its message cannot be accepted."""


class UnknownMessageTypeError(MessageError):
    """The frame's message type is not in this implementation's catalogue."""

    def __init__(self, msg_type: int) -> None:
        super().__init__(f"unknown message type 0x{msg_type:02x}")
        self.msg_type = msg_type


class MalformedPayloadError(MessageError):
    """The payload is not a single msgpack map."""


class FieldError(MessageError):
    """One field of a message is missing, of the wrong type or out of its limits."""

    def __init__(self, message: str, field: str, reason: str) -> None:
        super().__init__(f"{message}.{field}: {reason}")
        self.message_name = message
        self.field = field
        self.reason = reason


# --- link: misuse of the state machine by the local application ---------------------------


class LinkError(ProtocolError):
    """The local application asked the link for something it cannot do."""


class MessageTooLargeError(LinkError):
    """The encoded message would exceed the peer's largest receivable frame."""


class QueueFullError(LinkError):
    """The send queue is at ``LinkConfig.max_queue``: apply backpressure upstream."""


class WrongRoleError(LinkError):
    """The message may only be sent by the other role (e.g. a device sending START_TASK)."""
