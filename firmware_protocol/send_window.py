"""The sending side of a link's sequence space: queue, window, acks, retransmission timer.

Pure bookkeeping for ``Link``: messages waiting for window space, those sent and not yet
acknowledged, the adaptive retransmission timeout (RTT samples, Karn's rule, backoff), and how
a TASK_OUTPUT is framed once the session binds task handles. Writing frames stays with the link.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from .budget import str_header_size
from .constants import FRAME_OVERHEAD
from .handles import HandleSender
from .link_config import LinkConfig
from .messages import Message, TaskOutput
from .rtt import RttEstimator
from .seqnum import seq_add, seq_diff


@dataclass(slots=True)
class Outgoing:
    """A sequenced message with its encoded payload, and its sequence number once sent."""

    message: Message
    payload: bytes
    seq: int = 0
    #: When its last byte left (line_rate known) or was handed out.
    sent_at: float = 0.0
    #: What goes on the wire, set as the sequence number is assigned (a TASK_OUTPUT may
    #: travel as TASK_DATA, see handles.py).
    wire_type: int = 0
    wire_payload: bytes = b""
    #: Karn's rule: an ack for a retransmitted frame is no RTT sample.
    retransmitted: bool = False


class SendWindow:
    """``queue``: messages waiting behind a full window. ``unacked``: sent, oldest first.
    ``retransmit_at``: when the oldest unacked frame is resent, None if nothing is in flight."""

    def __init__(self, config: LinkConfig) -> None:
        self.queue: deque[Outgoing] = deque()
        self.unacked: deque[Outgoing] = deque()
        self.retransmit_at: float | None = None
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self._rto_min = config.rto_min
        self._next_seq = 0
        self._handles = HandleSender()

    # --- framing --------------------------------------------------------------------------------

    @staticmethod
    def wire_size(message: Message, payload: bytes, *, task_handles: bool) -> int:
        """The frame `message` needs: a TASK_OUTPUT is sized as the TASK_DATA it will travel as
        when the session has task handles (its binding frame is split if need be)."""
        if task_handles and isinstance(message, TaskOutput):
            id_len = len(message.task_id.encode("utf-8", "surrogateescape"))
            # The task id (str header and bytes) becomes a one-byte handle.
            return len(payload) - str_header_size(id_len) - id_len + 1 + FRAME_OVERHEAD
        return len(payload) + FRAME_OVERHEAD

    def number(self, item: Outgoing, limit: int, *, task_handles: bool) -> None:
        """Give `item` the next sequence number and its frame, and count it in flight.

        A TASK_OUTPUT travels as TASK_DATA once this session bound its task's handle (the
        first one binds it); if the binding frame takes part of the data, the rest is queued
        first to follow as the next frame."""
        message = item.message
        if not (task_handles and isinstance(message, TaskOutput)):
            item.wire_type, item.wire_payload = message.TYPE, item.payload
        else:
            wired, rest = self._handles.encode(message, limit)
            if rest is not None:
                item.message = message = replace(
                    message, data=message.data[: rest.offset - message.offset]
                )
                item.payload = message.to_bytes()
                self.queue.appendleft(Outgoing(rest, rest.to_bytes()))
            item.wire_type, item.wire_payload = wired.TYPE, wired.to_bytes()
        item.seq = self._next_seq
        self._next_seq = seq_add(self._next_seq, 1)
        self.unacked.append(item)

    def sent(self, item: Outgoing) -> None:
        """`item` was written (its ``sent_at`` set): start the timer if none runs."""
        if self.retransmit_at is None:
            self.retransmit_at = item.sent_at + self.rtt.rto

    # --- acks and the timer ---------------------------------------------------------------------

    def on_ack(self, ack: int, now: float, *, pure: bool) -> bool:
        """Drop what ``ack`` covers, take an RTT sample, rearm the timer. Returns True if the
        whole window should be resent at once (a fast retransmit)."""
        if not self.unacked:
            return False
        acked = seq_diff(ack, self.unacked[0].seq)
        if acked == 0 and pure:
            # A pure ACK that does not advance means the peer saw a gap (go-back-N receivers
            # ack every out-of-order frame). Resend at once instead of waiting for the timer,
            # but only when the oldest frame has had a round trip to arrive, so crossing acks
            # do not trigger.
            return now - self.unacked[0].sent_at >= (self.rtt.srtt or self._rto_min)
        if not 0 < acked <= len(self.unacked):
            return False  # stale or duplicate ack
        sample: float | None = None
        for _ in range(acked):
            item = self.unacked.popleft()
            if not item.retransmitted:
                sample = max(now - item.sent_at, 0.0)
        if sample is not None:
            self.rtt.sample(sample)
        else:
            self.rtt.restore()
        # The timer runs for the oldest unacked frame from when it has left the line.
        self.retransmit_at = (
            max(now, self.unacked[0].sent_at) + self.rtt.rto if self.unacked else None
        )
        return False

    def resent(self, *, backoff: bool) -> None:
        """Every unacked frame was written again: back off (timer expiry) and rearm."""
        if backoff:
            self.rtt.backoff()
        self.retransmit_at = self.unacked[0].sent_at + self.rtt.rto if self.unacked else None

    # --- sessions -------------------------------------------------------------------------------

    def restart(self) -> None:
        """A fresh sequence space: numbering restarts at 0, unacked messages go back to the
        queue's head (to be renumbered), task handles are bound anew."""
        while self.unacked:
            item = self.unacked.pop()
            item.retransmitted = False
            self.queue.appendleft(item)
        self._next_seq = 0
        self._handles.reset()
        self.retransmit_at = None

    def drop_all(self) -> tuple[Message, ...]:
        """Forget every message not yet acknowledged (meant for a peer that rebooted)."""
        dropped = tuple(o.message for o in (*self.unacked, *self.queue))
        self.unacked.clear()
        self.queue.clear()
        return dropped
