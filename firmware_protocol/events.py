"""What a ``Link`` reports to its application after being fed bytes or time."""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Hello, Load, Message, Welcome


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An application message from the peer, delivered exactly once and in order
    (sequenced messages) within one session.

    ``receipt`` is set when the message's type is one the Link was told to hold (``Link(...,
    hold=...)``): the frame is not acknowledged past until the application calls
    ``link.release(receipt)`` (persist-then-ack, PROTOCOL.md section 6). None otherwise: the
    Link acknowledges the message by itself."""

    message: Message
    receipt: int | None = None


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The handshake completed. ``hello`` holds the device's facts, ``welcome`` the gateway's.

    ``resumed`` True: the previous session continues (nothing lost, nothing repeated).
    """

    hello: Hello
    welcome: Welcome
    resumed: bool


@dataclass(frozen=True, slots=True)
class PeerReset:
    """The peer is a new incarnation: the device rebooted (new boot id, seen by the gateway) or
    the gateway started a new session (seen by the device). Emitted just before ``LinkUp``.

    ``dropped`` are the sequenced messages this side discarded because they were meant for the
    old incarnation (gateway side: commands to a rebooted device). The application should fail
    the requests among them and reconcile (LIST_TASKS).
    """

    previous_id: int
    new_id: int
    dropped: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class LinkLost:
    """Nothing valid heard from the peer for ``LinkConfig.link_lost_timeout`` seconds.

    The link goes back to the handshake by itself; unacked messages are kept for a resume.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Handshake refused (no common version). ``by_peer`` False: this side refused.

    A device link stops in ``LinkState.REFUSED``; a gateway link keeps waiting for a HELLO.
    """

    code: int
    reason: str
    peer_versions: tuple[int, ...]
    by_peer: bool


@dataclass(frozen=True, slots=True)
class HeartbeatAnswered:
    """A PONG answered our PING: round-trip time in seconds and the device's load, if sent."""

    rtt: float
    load: Load | None


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """An intact frame carried a message this side could not accept; an ERROR was sent back
    for sequenced frames. ``msg_type`` is the frame's type byte."""

    msg_type: int
    error: str


Event = (
    MessageReceived
    | LinkUp
    | PeerReset
    | LinkLost
    | Refused
    | HeartbeatAnswered
    | (MessageRejected)
)
