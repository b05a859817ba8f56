"""The link state machine, used by both ends: handshake, seq/ack, window, retransmit, heartbeat.

Sans-I/O: it never reads a clock or touches a port. Feed it received bytes with
``receive_data(data, now)`` and timer expiries with ``on_timer(now)``; both return events. Queue
messages with ``send(message, now)``. Collect bytes to write with ``data_to_send()`` and wake up at
``next_deadline()``.

``Link`` runs the state machine and dispatches frames; each part of its state has one owner:
``handshake.Handshake`` (session negotiation), ``send_window.SendWindow`` (queue, window, acks,
retransmission timer), ``receive_window.ReceiveWindow`` (in-order delivery, the ack, held
messages), ``heartbeat.Heartbeat`` (PING/PONG), ``line_writer.LineWriter`` (outgoing bytes,
line-rate accounting) and ``handles`` (task handles). ``LinkConfig``, ``LinkState`` and
``LinkStats`` live in ``link_config`` and are importable from here.
"""

from __future__ import annotations

from collections.abc import Collection

from .budget import fit_error, refit, truncate_utf8
from .constants import (
    FEATURE_TASK_HANDLES,
    HANDSHAKE_HEADER_VERSION,
    MAX_FRAME_CEILING,
    MAX_TEXT,
    MAX_WINDOW,
    MIN_FRAME,
    Role,
)
from .errors import (
    MessageError,
    MessageTooLargeError,
    QueueFullError,
    UnknownMessageTypeError,
    WrongRoleError,
)
from .events import (
    Event,
    HeartbeatAnswered,
    LinkLost,
    LinkUp,
    MessageReceived,
    MessageRejected,
    PeerReset,
    Refused,
)
from .framing import DecoderStats, Frame, FrameDecoder, FrameFlags, encode_frame
from .handles import HandleReceiver, UnboundHandleError
from .handshake import Handshake
from .heartbeat import Heartbeat
from .line_writer import LineWriter
from .link_config import LinkConfig, LinkState, LinkStats
from .messages import (
    Ack,
    Error,
    ErrorCode,
    Hello,
    HelloRequest,
    Load,
    Message,
    MessageType,
    Ping,
    Pong,
    Refuse,
    Welcome,
    parse,
    request_id_of,
)
from .receive_window import Arrival, ReceiveWindow
from .send_window import Outgoing, SendWindow

__all__ = ["Link", "LinkConfig", "LinkState", "LinkStats"]


class Link:
    """One end of a link. ``role`` decides who sends HELLO (device) and WELCOME (gateway).

    Device: pass ``hello`` with its facts (versions, max_frame, window and last_session are
    filled in by the link from ``config`` and its own state). Gateway: pass ``session_id``, a
    random non-zero u32, new for each gateway Link (see PROTOCOL.md "Resync").

    ``hold``: sequenced message types this side acknowledges only once the application has
    released them (persist-then-ack, PROTOCOL.md section 6). Each such message is delivered
    once, in a ``MessageReceived`` with a ``receipt``; the cumulative ack stops before it until
    ``release(receipt)``. Other types are acknowledged on delivery, as by default.
    """

    def __init__(
        self,
        role: Role,
        config: LinkConfig | None = None,
        *,
        hello: Hello | None = None,
        session_id: int | None = None,
        hold: Collection[int] = (),
    ) -> None:
        self.role = role
        self._hold_types = frozenset(int(t) for t in hold)
        self.config = config = config or LinkConfig()
        if not 1 <= config.window <= MAX_WINDOW:
            raise ValueError(f"window {config.window} outside 1..{MAX_WINDOW}")
        if not MIN_FRAME <= config.max_frame <= MAX_FRAME_CEILING:
            raise ValueError(f"max_frame {config.max_frame} outside {MIN_FRAME}..")
        # Session negotiation: what was offered and agreed, the probe timer.
        self._hs = Handshake(role, config, hello, session_id)
        self.stats = LinkStats()
        self.state = LinkState.IDLE
        # Bytes for the transport, and when our last byte will have left the line.
        self._line = LineWriter(config.line_rate, self.stats)
        # Task handles the peer bound in this session (TASK_DATA back to TASK_OUTPUT).
        self._handles_in = HandleReceiver()
        self._decoder = FrameDecoder(max_frame=config.max_frame)
        self._events: list[Event] = []
        self._link_lost_timeout = config.link_lost_timeout
        # Sending side: queue, window, acks, retransmission timer.
        self._tx = SendWindow(config)
        # Receiving side: in-order delivery, the ack we send, held messages.
        self._rx = ReceiveWindow()
        # Liveness: the last valid frame heard, and the PING/PONG heartbeat.
        self._last_heard = 0.0
        self._beat = Heartbeat(role, config.heartbeat_interval)
        # The nonce of the latest PING not answered yet: its PONG is built when the transport
        # takes bytes, so a peer that floods PINGs and does not read gets one PONG per write,
        # not one per PING piling up behind a full tty (the pinger only counts the latest).
        self._pong_due: int | None = None

    # --- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """Begin the handshake (device: HELLO; gateway: HELLO_REQUEST)."""
        self._line.now = now
        if self.state is LinkState.IDLE:
            self._enter_handshake(now)
        return self._take_events()

    def request_handshake(self, now: float) -> list[Event]:
        """The transport was reconnected (re-plug, new pty): start a new handshake at once.

        Unlike creating a new Link, this keeps the session, sequence state and unacked messages,
        so the peer can resume. Bytes of the old connection still buffered (a partial frame
        received, frames not yet written) are discarded; unacked frames are resent after the
        handshake. Reports ``LinkLost`` if the link was up.
        """
        if self.state is LinkState.REFUSED:
            return []
        self._line.reset(now)
        self._pong_due = None
        self._decoder.reset()
        if self.state is LinkState.UP:
            self._lose_link(now, "transport reconnected")
        else:
            self._enter_handshake(now)
        return self._take_events()

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the transport, in any split. Never raises on bad input."""
        self._line.now = now
        self.stats.bytes_received += len(data)
        frames = self._decoder.feed(data)
        self._mirror_decoder_stats()
        for frame in frames:
            self.stats.frames_received += 1
            self._on_frame(frame, now)
        self._pump(now)
        return self._take_events()

    def on_timer(self, now: float) -> list[Event]:
        """Call at or after ``next_deadline()``; harmless to call early or often."""
        self._line.now = now
        if self.state is LinkState.HANDSHAKE:
            if self._hs.next_probe is not None and now >= self._hs.next_probe:
                self._send_handshake_probe(now)
        elif self.state is LinkState.UP:
            # Compare with the very sum next_deadline() returns: float subtraction could
            # leave us a hair short of the deadline forever.
            if now >= self._last_heard + self._link_lost_timeout:
                self._lose_link(now, f"nothing heard for {now - self._last_heard:.3f} s")
                return self._take_events()
            if self._tx.retransmit_at is not None and now >= self._tx.retransmit_at:
                self._retransmit(now)
            if self._beat.due(now):
                self._send_ping(now)
        return self._take_events()

    def send(self, message: Message, now: float) -> None:
        """Queue a sequenced message. It leaves as the window allows and is kept across link
        loss until acknowledged.

        Raises ``WrongRoleError`` (not this role's message or a link-control message),
        ``MessageTooLargeError`` (frame above the peer's limit) and ``QueueFullError``.
        """
        self._line.now = now
        if not message.SEQUENCED:
            raise WrongRoleError(f"{type(message).__name__} is sent by the link itself")
        if self.role not in message.SENDERS:
            raise WrongRoleError(f"a {self.role} does not send {type(message).__name__}")
        payload = message.to_bytes()
        limit = self.send_limit
        size = SendWindow.wire_size(message, payload, task_handles=self.task_handles)
        if size > limit:
            raise MessageTooLargeError(
                f"{type(message).__name__} needs {size} bytes, limit {limit}"
            )
        if len(self._tx.queue) >= self.config.max_queue:
            raise QueueFullError(f"{len(self._tx.queue)} messages queued")
        self._tx.queue.append(Outgoing(message, payload))
        self._pump(now)

    def release(self, receipt: int) -> None:
        """The application is done with a held message (e.g. its output is on disk): the ack
        may now cover it, once every earlier held message is released too. Receipts of an
        earlier sequence space, unknown or repeated ones are ignored."""
        self._rx.release(receipt)

    def set_load(self, load: Load | None) -> None:
        """Device: the load to attach to PONGs from now on."""
        self._beat.load = load

    # --- outputs ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the transport (drains the outgoing buffer).

        Adds a pure ACK if sequenced frames were received and no outgoing frame has carried
        their acknowledgement yet, so replies the application sent first piggyback the ack.
        """
        if self._pong_due is not None:
            if self.state is LinkState.UP:
                payload = self._beat.pong(self._pong_due, self.send_limit)
                self._emit_control(MessageType.PONG, payload)
            self._pong_due = None
        if self._rx.ack_pending and self.state is LinkState.UP:
            self._emit(Ack())
        return self._line.take()

    @property
    def has_output(self) -> bool:
        """True if ``data_to_send()`` would return bytes (frames, or a pending pure ACK)."""
        return (
            self._line.pending
            or self._pong_due is not None
            or (self._rx.ack_pending and self.state is LinkState.UP)
        )

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next be called, None if nothing is pending."""
        if self.state is LinkState.HANDSHAKE:
            return self._hs.next_probe
        if self.state is not LinkState.UP:
            return None
        # No list and min(): the driver asks after every batch of bytes received.
        deadline = self._last_heard + self._link_lost_timeout
        retransmit_at = self._tx.retransmit_at
        if retransmit_at is not None and retransmit_at < deadline:
            deadline = retransmit_at
        next_ping = self._beat.next_ping
        if next_ping is not None and next_ping < deadline:
            deadline = next_ping
        return deadline

    @property
    def _next_ping(self) -> float | None:
        """When this side's next PING is due (tests silence a device's own heartbeat here)."""
        return self._beat.next_ping

    @_next_ping.setter
    def _next_ping(self, at: float | None) -> None:
        self._beat.next_ping = at

    # --- figures ------------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self.state is LinkState.UP

    @property
    def send_limit(self) -> int:
        """Largest frame this side may send: the peer's declared ``max_frame`` once known
        (before the first handshake, this side's own)."""
        return self._hs.peer_max_frame or self.config.max_frame

    @property
    def srtt(self) -> float | None:
        """Smoothed round-trip time in seconds, None before the first sample."""
        return self._tx.rtt.srtt

    @property
    def rto(self) -> float:
        """Current retransmission timeout in seconds."""
        return self._tx.rtt.rto

    @property
    def window(self) -> int:
        """Effective send window: min(own, peer's declared)."""
        return min(self.config.window, self._hs.peer_window)

    @property
    def credits(self) -> int:
        """Sequenced frames that may be sent now without waiting for acks (0 while down)."""
        if self.state is not LinkState.UP:
            return 0
        return max(self.window - len(self._tx.unacked) - len(self._tx.queue), 0)

    @property
    def queued(self) -> int:
        """Sequenced messages waiting for window space (not yet sent)."""
        return len(self._tx.queue)

    @property
    def unacked(self) -> int:
        """Sequenced messages sent and not yet acknowledged."""
        return len(self._tx.unacked)

    @property
    def held(self) -> int:
        """Sequenced frames received and delivered but not yet acknowledged because a held
        message among them awaits ``release``. The peer can send ``window - held`` more."""
        return self._rx.held

    @property
    def features(self) -> int:
        """Optional features of the current session (``FEATURE_*`` bits), 0 before it."""
        return self._hs.features

    @property
    def task_handles(self) -> bool:
        """True if this session sends task output as TASK_DATA (feature TASK_HANDLES)."""
        return bool(self._hs.features & FEATURE_TASK_HANDLES)

    @property
    def peer_hello(self) -> Hello | None:
        """The device's facts: its own HELLO (device side) or the accepted one (gateway)."""
        hs = self._hs
        return hs.own_hello if self.role is Role.DEVICE else hs.peer_hello

    @property
    def welcome(self) -> Welcome | None:
        """The WELCOME of the current (or last) session."""
        return self._hs.welcome

    @property
    def version(self) -> int:
        """Negotiated protocol version (the preferred one before the handshake)."""
        return self._hs.version

    @property
    def session_id(self) -> int:
        """Gateway session id of the current session, 0 before the first handshake (device)."""
        return self._hs.session_id

    @property
    def decoder_stats(self) -> DecoderStats:
        return self._decoder.stats

    # --- frame dispatch -------------------------------------------------------------------------

    def _on_frame(self, frame: Frame, now: float) -> None:
        msg_type = frame.type
        if msg_type in _HANDSHAKE_TYPES:
            self._last_heard = now
            self._on_handshake_frame(frame, now)
            return
        if self.state is not LinkState.UP:
            # A gateway that lost its state hears a device still in session: ask for HELLO.
            if (
                self.role is Role.GATEWAY
                and self.state is LinkState.HANDSHAKE
                and now - self._hs.last_hello_request >= self.config.rto_min
            ):
                self._send_handshake_probe(now, reschedule=False)
            return
        if frame.version != self._hs.version:
            self.stats.bad_version += 1
            return
        self._last_heard = now
        pure = msg_type == MessageType.ACK
        if frame.has_ack and self._tx.on_ack(frame.ack, now, pure=pure):
            self.stats.fast_retransmits += 1
            self._retransmit(now, backoff=False)
        if frame.sequenced:
            self._on_sequenced(frame)
        elif msg_type == MessageType.PING:
            self._on_ping(frame, now)
        elif msg_type == MessageType.PONG:
            self._on_pong(frame, now)
        elif msg_type != MessageType.ACK:
            # Unknown unsequenced types are ignored: there is nothing to acknowledge.
            self.stats.undecodable += 1
            self._events.append(MessageRejected(msg_type, "unknown unsequenced message type"))

    def _on_sequenced(self, frame: Frame) -> None:
        arrival = self._rx.arrive(frame.seq, self.config.window)
        if arrival is Arrival.DUPLICATE:
            self.stats.duplicates += 1
            return
        if arrival is Arrival.OVERRUN:
            self.stats.overruns += 1
            return
        if arrival is Arrival.GAP:
            self.stats.out_of_order += 1  # go-back-N: the sender resends from the gap
            return
        seq = frame.seq
        try:
            message = parse(frame)
        except UnknownMessageTypeError as exc:
            self._rx.settle(seq, held=False)
            self._reject(frame, ErrorCode.UNSUPPORTED, str(exc))
            return
        except MessageError as exc:
            self._rx.settle(seq, held=False)
            self._reject(frame, ErrorCode.MALFORMED, str(exc))
            return
        peer_role = Role.DEVICE if self.role is Role.GATEWAY else Role.GATEWAY
        if peer_role not in message.SENDERS:
            self._rx.settle(seq, held=False)
            self._reject(frame, ErrorCode.WRONG_DIRECTION, f"a {peer_role} may not send this")
            return
        try:
            message = self._handles_in.decode(message)
        except UnboundHandleError as exc:
            self._rx.settle(seq, held=False)
            self._reject(frame, ErrorCode.MALFORMED, str(exc))
            return
        receipt = self._rx.settle(seq, held=int(message.TYPE) in self._hold_types)
        self.stats.messages_delivered += 1
        self._events.append(MessageReceived(message, receipt))

    def _reject(self, frame: Frame, code: ErrorCode, text: str) -> None:
        self.stats.undecodable += 1
        self._events.append(MessageRejected(frame.type, text))
        if frame.type == MessageType.ERROR:
            return  # never answer an ERROR with an ERROR: two peers could loop
        reply = fit_error(
            Error(
                request_id_of(frame.payload), int(code), truncate_utf8(text, MAX_TEXT), frame.type
            ),
            self.send_limit,
        )
        if len(self._tx.queue) < self.config.max_queue:
            self._tx.queue.append(Outgoing(reply, reply.to_bytes()))

    def _on_ping(self, frame: Frame, now: float) -> None:
        try:
            ping = Ping.from_bytes(frame.payload)
        except MessageError as exc:
            self.stats.undecodable += 1
            self._events.append(MessageRejected(frame.type, str(exc)))
            return
        if self._pong_due is not None:
            self.stats.pings_coalesced += 1
        self._pong_due = ping.nonce
        if self._beat.rides_with_pong(now):
            self._send_ping(now, riding=True)

    def _on_pong(self, frame: Frame, now: float) -> None:
        try:
            pong = Pong.from_bytes(frame.payload)
        except MessageError as exc:
            self.stats.undecodable += 1
            self._events.append(MessageRejected(frame.type, str(exc)))
            return
        rtt = self._beat.answered(pong.nonce, now)
        if rtt is None:
            return  # an old or foreign PONG: no trustworthy RTT
        backed_off = self._tx.rtt.rto
        self._tx.rtt.sample(rtt)
        if self._tx.unacked and self._tx.unacked[0].retransmitted:
            # A PONG proves the line works, not that the peer takes our frames (it may hold
            # them until released, section 6): undoing the backoff every heartbeat would
            # resend the whole window several times per heartbeat. An ack restores it.
            self._tx.rtt.keep_at_least(backed_off)
        self._events.append(HeartbeatAnswered(rtt, pong.load))

    # --- handshake ------------------------------------------------------------------------------

    def _on_handshake_frame(self, frame: Frame, now: float) -> None:
        try:
            message = parse(frame)
        except MessageError as exc:
            self.stats.undecodable += 1
            self._events.append(MessageRejected(frame.type, str(exc)))
            return
        if self.role is Role.GATEWAY:
            if isinstance(message, Hello):
                self._gateway_on_hello(message, now)
            elif isinstance(message, Refuse):
                # The device rejected our WELCOME: the session we opened is not one.
                self._events.append(
                    Refused(message.code, message.reason, message.versions, by_peer=True)
                )
                if self.state is LinkState.UP:
                    self._lose_link(now, "device refused the session")
            return
        if self.state is LinkState.REFUSED:
            return
        if isinstance(message, HelloRequest):
            if self.state is LinkState.UP:
                self._lose_link(now, "gateway requested a new handshake")
            else:
                self._send_handshake_probe(now)
        elif isinstance(message, Welcome):
            if self.state is LinkState.HANDSHAKE:
                self._device_on_welcome(message, now)
        elif isinstance(message, Refuse) and self.state is LinkState.HANDSHAKE:
            self.state = LinkState.REFUSED
            self._hs.settled()
            self._events.append(
                Refused(message.code, message.reason, message.versions, by_peer=True)
            )

    def _gateway_on_hello(self, hello: Hello, now: float) -> None:
        hs = self._hs
        if hs.repeats_session(hello):
            # Our WELCOME was lost or crossed the HELLO: repeat it and keep all sequence state,
            # whatever happened since: deciding afresh could reset one side only and
            # desynchronise the seq spaces.
            assert hs.welcome is not None
            self._emit(hs.welcome)
            if self.state is not LinkState.UP:
                self._enter_up(hello, hs.welcome, True, now)
            return
        if hs.is_stale(hello):
            return
        version = hs.common_version(hello)
        if version is None:
            reason = "no common protocol version"
            refuse = Refuse(ErrorCode.NO_COMMON_VERSION, reason, self.config.versions)
            self._emit(refuse)
            self._events.append(
                Refused(ErrorCode.NO_COMMON_VERSION, reason, hello.versions, by_peer=False)
            )
            if self.state is LinkState.UP:
                self._lose_link(now, "device offered no common version")
            return
        resume = hs.resumes(hello, version)
        if self.state is LinkState.UP:
            # No HELLO_REQUEST: the device is handshaking already, WELCOME follows at once.
            self._lose_link(now, "device started a new handshake", probe=False)
        if not resume:
            if hs.peer_boot_id not in (0, hello.boot_id):
                # Commands were meant for the previous boot: hand them back to the application.
                dropped = self._tx.drop_all()
                self._events.append(PeerReset(hs.peer_boot_id, hello.boot_id, dropped))
            self._restart_sequence_space()
        welcome = hs.accept_hello(hello, version, resume)
        self._emit(welcome)
        self._enter_up(hello, welcome, resume, now)

    def _device_on_welcome(self, welcome: Welcome, now: float) -> None:
        hs = self._hs
        if not hs.answers_this_attempt(welcome):
            return
        if welcome.version not in self.config.versions:
            reason = f"gateway chose version {welcome.version}, not offered"
            self._emit(Refuse(ErrorCode.NO_COMMON_VERSION, reason, self.config.versions))
            self.state = LinkState.REFUSED
            hs.settled()
            self._events.append(
                Refused(ErrorCode.NO_COMMON_VERSION, reason, (welcome.version,), by_peer=False)
            )
            return
        resume = hs.welcome_resumes(welcome)
        if not resume:
            if hs.last_session not in (0, welcome.session_id):
                # A new gateway session: keep our reports (output must not be lost), renumber.
                self._events.append(PeerReset(hs.last_session, welcome.session_id, ()))
            self._restart_sequence_space()
        hs.accept_welcome(welcome)
        if welcome.heartbeat_ms:
            self._beat.interval = welcome.heartbeat_ms / 1000
        if welcome.link_lost_ms:
            self._link_lost_timeout = welcome.link_lost_ms / 1000
        self._enter_up(hs.hello_to_send(), welcome, resume, now)

    def _enter_up(self, hello: Hello, welcome: Welcome, resumed: bool, now: float) -> None:
        self.state = LinkState.UP
        self._hs.settled()
        self._last_heard = now
        self._beat.start(now)
        self._rx.ack_pending = False
        self._events.append(LinkUp(hello, welcome, resumed))
        if self._tx.unacked:
            self._retransmit(now, backoff=False)

    def _restart_sequence_space(self) -> None:
        """Both directions restart at seq 0; unacked messages go back to the queue's head."""
        self._tx.restart()
        self._rx.restart()
        self._handles_in.reset()

    def _enter_handshake(self, now: float) -> None:
        self.state = LinkState.HANDSHAKE
        self._hs.begin()
        self._tx.retransmit_at = None
        self._beat.stop()
        self._send_handshake_probe(now)

    def _send_handshake_probe(self, now: float, *, reschedule: bool = True) -> None:
        self._emit(self._hs.probe(now, reschedule=reschedule))

    def _lose_link(self, now: float, reason: str, *, probe: bool = True) -> None:
        self.stats.link_losses += 1
        self._events.append(LinkLost(reason))
        if probe:
            self._enter_handshake(now)
        else:
            self.state = LinkState.HANDSHAKE
            self._tx.retransmit_at = None
            self._beat.stop()

    # --- sending --------------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Move queued messages into the window while there is room."""
        if self.state is not LinkState.UP:
            return
        limit = self._hs.peer_max_frame or MAX_FRAME_CEILING
        handles = self.task_handles
        while self._tx.queue and len(self._tx.unacked) < self.window:
            item = self._tx.queue.popleft()
            if SendWindow.wire_size(item.message, item.payload, task_handles=handles) > limit:
                # Built for a larger frame than this peer takes (a gateway that restarted with
                # a smaller max_frame): split output, cut texts; drop only what cannot fit.
                parts = refit(item.message, limit)
                if not parts:
                    self._events.append(
                        MessageRejected(item.message.TYPE, "too large for the peer's max_frame")
                    )
                for part in reversed(parts):
                    self._tx.queue.appendleft(Outgoing(part, part.to_bytes()))
                continue
            self._tx.number(item, limit, task_handles=handles)
            item.sent_at = self._emit_sequenced(item)
            self._tx.sent(item)

    def _retransmit(self, now: float, *, backoff: bool = True) -> None:
        """Go-back-N: resend every unacked frame from the oldest."""
        for item in self._tx.unacked:
            item.retransmitted = True
            self.stats.retransmits += 1
            item.sent_at = self._emit_sequenced(item)
        self._tx.resent(backoff=backoff)

    def _send_ping(self, now: float, *, riding: bool = False) -> None:
        payload = self._beat.ping(now, riding=riding)
        self._beat.sent(self._emit_control(MessageType.PING, payload))

    def _emit_sequenced(self, item: Outgoing) -> float:
        data = encode_frame(
            self._hs.version,
            item.wire_type,
            _SEQ_ACK,
            item.seq,
            self._rx.ack,
            payload=item.wire_payload,
        )
        self._rx.ack_pending = False
        return self._line.write(data)

    def _emit(self, message: Message) -> float:
        """Send an unsequenced message now (link control); returns when it will have left."""
        if message.TYPE in _HANDSHAKE_TYPES:
            data = encode_frame(
                HANDSHAKE_HEADER_VERSION, message.TYPE, 0, 0, 0, payload=message.to_bytes()
            )
            return self._line.write(data)
        return self._emit_control(message.TYPE, message.to_bytes())

    def _emit_control(self, msg_type: int, payload: bytes) -> float:
        """Send an unsequenced frame of the session (it carries our ack)."""
        data = encode_frame(self._hs.version, msg_type, _ACK, 0, self._rx.ack, payload=payload)
        self._rx.ack_pending = False
        return self._line.write(data)

    # --- helpers --------------------------------------------------------------------------------

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _mirror_decoder_stats(self) -> None:
        d = self._decoder.stats
        self.stats.crc_errors = d.bad_crc
        self.stats.framing_errors = d.bad_cobs + d.too_short + d.oversize


_ACK = int(FrameFlags.ACK)
_SEQ_ACK = int(FrameFlags.SEQ | FrameFlags.ACK)
_HANDSHAKE_TYPES = frozenset(
    {MessageType.HELLO, MessageType.WELCOME, MessageType.REFUSE, MessageType.HELLO_REQUEST}
)
