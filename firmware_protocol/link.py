"""The link state machine, used by both ends: handshake, seq/ack, window, retransmit, heartbeat.

Sans-I/O: it never reads a clock or touches a port. Feed it received bytes with
``receive_data(data, now)`` and timer expiries with ``on_timer(now)``; both return events. Queue
messages with ``send(message, now)``. Collect bytes to write with ``data_to_send()`` and wake up at
``next_deadline()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .constants import DEFAULT_MAX_FRAME, SUPPORTED_VERSIONS, Role
from .events import Event
from .messages import Hello, Load, Message


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Every tunable of the link. Times in seconds. Tests shorten them freely."""

    #: Largest frame (header + payload + CRC, before COBS) this side accepts; declared to the peer.
    max_frame: int = DEFAULT_MAX_FRAME
    #: Sequenced frames this side can buffer unprocessed (declared to the peer), and the most it
    #: keeps in flight itself: the effective send window is min(own, peer's).
    window: int = 4
    #: Messages waiting behind a full window before ``send`` raises ``QueueFullError``.
    max_queue: int = 64
    #: Retransmission timeout before any RTT sample: generous for a 9600-baud UART.
    rto_initial: float = 0.5
    #: Floor of the adaptive timeout: USB-CDC RTTs are a few ms, but hosts stall.
    rto_min: float = 0.1
    #: Ceiling of the adaptive timeout after exponential backoff.
    rto_max: float = 4.0
    #: PING period while the link is up; also bounds how stale a device load report can be.
    heartbeat_interval: float = 2.0
    #: Silence (no valid frame) after which the link is reported lost: three missed heartbeats.
    link_lost_timeout: float = 6.0
    #: Repeat period of HELLO (device) / HELLO_REQUEST (gateway) while the handshake is pending.
    hello_interval: float = 0.5
    #: Protocol versions offered (device) or accepted (gateway), newest first.
    versions: tuple[int, ...] = SUPPORTED_VERSIONS


class LinkState(Enum):
    IDLE = "idle"  # constructed, start() not called yet
    HANDSHAKE = "handshake"  # device: sending HELLO; gateway: waiting for HELLO
    UP = "up"
    REFUSED = "refused"  # device only: the gateway refused us; terminal


@dataclass(slots=True)
class LinkStats:
    """Figures for metrics and tests. Counters only grow."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmits: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    undecodable: int = 0
    bad_version: int = 0
    link_losses: int = 0
    # Decoder drops are mirrored here so one object carries every figure.
    crc_errors: int = 0
    framing_errors: int = 0
    messages_delivered: int = 0


class Link:
    """One end of a link. ``role`` decides who sends HELLO (device) and WELCOME (gateway).

    Device: pass ``hello`` with its facts (versions, max_frame, window and last_session are
    filled in by the link from ``config`` and its own state). Gateway: pass ``session_id``, a
    random non-zero u32 new for each gateway process (or each Link, see PROTOCOL.md "Resync").
    """

    def __init__(
        self,
        role: Role,
        config: LinkConfig | None = None,
        *,
        hello: Hello | None = None,
        session_id: int | None = None,
    ) -> None:
        self.role = role
        self.config = config or LinkConfig()
        self.stats = LinkStats()
        self.state = LinkState.IDLE
        raise NotImplementedError

    # --- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """Begin the handshake (device: HELLO; gateway: HELLO_REQUEST)."""
        raise NotImplementedError

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the transport, in any split."""
        raise NotImplementedError

    def on_timer(self, now: float) -> list[Event]:
        """Call at or after ``next_deadline()``; harmless to call early or often."""
        raise NotImplementedError

    def send(self, message: Message, now: float) -> None:
        """Queue a message. Sequenced messages go out as the window allows, and are kept across
        link loss until acknowledged. Raises ``QueueFullError``, ``MessageTooLargeError``,
        ``WrongRoleError``."""
        raise NotImplementedError

    def set_load(self, load: Load | None) -> None:
        """Device: the load to attach to PONGs from now on."""
        raise NotImplementedError

    # --- outputs ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the transport (drains the outgoing buffer)."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next be called, None if nothing is pending."""
        raise NotImplementedError

    # --- figures ------------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self.state is LinkState.UP

    @property
    def srtt(self) -> float | None:
        """Smoothed round-trip time in seconds, None before the first sample."""
        raise NotImplementedError

    @property
    def credits(self) -> int:
        """Sequenced frames that may be sent now without waiting for acks."""
        raise NotImplementedError

    @property
    def queued(self) -> int:
        """Sequenced messages waiting for window space (not yet sent)."""
        raise NotImplementedError

    @property
    def unacked(self) -> int:
        """Sequenced messages sent and not yet acknowledged."""
        raise NotImplementedError
