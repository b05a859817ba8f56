"""The link's tunables (``LinkConfig``), state (``LinkState``) and figures (``LinkStats``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .constants import DEFAULT_MAX_FRAME, SUPPORTED_FEATURES, SUPPORTED_VERSIONS


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
    #: PING period while the link is up. A device load report (in the PONG to a gateway PING)
    #: is at most two periods old: the gateway pings every second period while the device does.
    heartbeat_interval: float = 2.0
    #: Silence (no valid frame) after which the link is reported lost: three missed heartbeats.
    link_lost_timeout: float = 6.0
    #: Repeat period of HELLO (device) / HELLO_REQUEST (gateway) while the handshake is pending.
    hello_interval: float = 0.5
    #: Protocol versions offered (device) or accepted (gateway), newest first.
    versions: tuple[int, ...] = SUPPORTED_VERSIONS
    #: Optional features offered (device) or accepted (gateway), ``FEATURE_*`` bits; a session
    #: uses those both sides name (HELLO and WELCOME ``features``).
    features: int = SUPPORTED_FEATURES
    #: Bytes per second the line carries in this side's sending direction (a UART: baud / 10),
    #: 0 if unknown or fast (USB). When known, frames count as sent when their last byte has
    #: left, not when handed to the transport: the retransmission timer and RTT samples then
    #: ignore the time frames wait behind others on a slow line (PROTOCOL.md section 6).
    line_rate: float = 0.0


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
    #: Go-back-N resends triggered by a gap report (pure ACK without progress).
    fast_retransmits: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    undecodable: int = 0
    bad_version: int = 0
    link_losses: int = 0
    # Decoder drops are mirrored here so one object carries every figure.
    crc_errors: int = 0
    framing_errors: int = 0
    messages_delivered: int = 0
    #: PINGs answered by a later PING's PONG: they came faster than the transport took bytes.
    pings_coalesced: int = 0
    #: In-order frames dropped because the sender had more than our declared window unacked.
    overruns: int = 0
