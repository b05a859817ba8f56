"""A scripted gateway for driving the C device frame by frame: the test chooses every header
field, so byte-exact exchanges, wrong-direction and malformed frames can be sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_protocol import (
    Frame,
    FrameDecoder,
    FrameFlags,
    Message,
    Welcome,
    parse,
)

from .clib import CDevice

SESSION = 0x5E55104E


@dataclass
class ScriptedGateway:
    device: CDevice
    now: float = 0.0
    seq: int = 0  # next seq we send
    frames: list[Frame] = field(default_factory=list)  # every frame the device sent
    _decoder: FrameDecoder = field(default_factory=lambda: FrameDecoder(max_frame=4096))

    def take(self) -> list[Frame]:
        """Frames the device wrote since the last call."""
        new = self._decoder.feed(self.device.data_to_send())
        self.frames += new
        return new

    def messages(self) -> list[Message]:
        return [parse(f) for f in self.take()]

    def welcome(
        self,
        *,
        attempt: int = 1,
        max_frame: int = 1024,
        window: int = 8,
        session: int = SESSION,
        features: int = 0,
    ) -> list[Frame]:
        welcome = Welcome(1, session, max_frame, window, False, 2000, 6000, attempt, features)
        return self.feed_frame(Frame(1, welcome.TYPE, FrameFlags.NONE, 0, 0, welcome.to_bytes()))

    def feed_frame(self, frame: Frame) -> list[Frame]:
        self.device.feed(frame.to_bytes(), self.now)
        return self.take()

    def ack_value(self) -> int:
        """The ack a real gateway would send: one past the last sequenced frame received."""
        seqs = [f.seq for f in self.frames if f.sequenced]
        return (seqs[-1] + 1) & 0xFFFF if seqs else 0

    def send(
        self, message: Message | None = None, *, msg_type: int = 0, payload: bytes = b""
    ) -> list[Frame]:
        """Send a sequenced frame (a message, or any type and payload) with the next seq."""
        if message is not None:
            msg_type, payload = message.TYPE, message.to_bytes()
        flags = FrameFlags.SEQ | FrameFlags.ACK
        frame = Frame(1, msg_type, flags, self.seq, self.ack_value(), payload)
        self.seq = (self.seq + 1) & 0xFFFF
        return self.feed_frame(frame)

    def ack(self) -> list[Frame]:
        return self.feed_frame(Frame(1, 0x05, FrameFlags.ACK, 0, self.ack_value(), b"\x80"))

    def poll(self, now: float | None = None) -> list[Frame]:
        if now is not None:
            self.now = now
        self.device.poll(self.now)
        return self.take()
