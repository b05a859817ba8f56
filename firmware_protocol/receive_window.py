"""The receiving side of a link's sequence space: in-order delivery, the ack, held messages.

Pure bookkeeping for ``Link``: which sequence number comes next, what the cumulative ack
covers, whether an ack is owed, and which delivered frames the application still holds
(persist-then-ack, PROTOCOL.md section 6). Parsing and events stay with the link.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from .seqnum import seq_add, seq_diff


class Arrival(Enum):
    """Where a sequenced frame falls relative to the next expected one."""

    DUPLICATE = "duplicate"  # delivered already
    GAP = "gap"  # ahead of a missing frame: go-back-N drops it, the sender resends
    NEXT = "next"  # the one expected: consumed, to be delivered
    # The one expected, but far beyond the window this side declared (unacknowledged frames
    # the sender may have): a sender that ignores the window is not let fill our memory.
    OVERRUN = "overrun"


class ReceiveWindow:
    """``next``: the next seq to deliver. ``ack``: the ack we send, the first seq not yet
    released. ``_held[i] = [seq, released]`` for every seq from ``ack`` up to ``next`` (only
    non-empty while a held message is unreleased). ``_epoch`` tells receipts of an earlier
    sequence space (before a fresh start) from current ones."""

    def __init__(self) -> None:
        self.next = 0
        self.ack = 0
        #: An ack is owed to the peer that no outgoing frame has carried yet.
        self.ack_pending = False
        self._held: deque[list[int]] = deque()
        self._epoch = 0

    @property
    def held(self) -> int:
        """Frames delivered but kept out of the ack until released."""
        return len(self._held)

    def arrive(self, seq: int, window: int) -> Arrival:
        """Classify a sequenced frame; a ``NEXT`` one is consumed and must be ``settle``d.
        ``window``: the frames we declared we can hold unacknowledged. A sender may overshoot
        it by as much again (an implementation counting differently loses nothing); beyond
        that the frame is an ``OVERRUN``."""
        distance = seq_diff(seq, self.next)
        if distance < 0:
            # Re-ack a duplicate the ack already covers: the sender missed our ack. One that is
            # delivered but held gets no answer: an ack that does not advance would be a gap
            # report and draw a fast retransmit; the ack follows the release.
            if seq_diff(seq, self.ack) < 0:
                self.ack_pending = True
            return Arrival.DUPLICATE
        if distance > 0:
            self.ack_pending = True  # the gap report
            return Arrival.GAP
        if seq_diff(seq, self.ack) >= 2 * window:
            return Arrival.OVERRUN  # dropped unprocessed: resent once the ack advances
        self.next = seq_add(self.next, 1)
        return Arrival.NEXT

    def settle(self, seq: int, *, held: bool) -> int | None:
        """Account for the in-order frame ``seq`` just consumed: acknowledge it now, or keep it
        (and everything after it) out of the ack until released. Returns the receipt of a held
        frame, None otherwise."""
        if held or self._held:
            self._held.append([seq, 0 if held else 1])
        else:
            self.ack = self.next
            self.ack_pending = True
        return (self._epoch << 16) | seq if held else None

    def release(self, receipt: int) -> None:
        """The application is done with a held frame; receipts of an earlier sequence space,
        unknown or repeated ones are ignored."""
        epoch, seq = receipt >> 16, receipt & 0xFFFF
        if epoch != self._epoch or not self._held:
            return
        index = seq_diff(seq, self._held[0][0])
        if not 0 <= index < len(self._held):
            return
        self._held[index][1] = 1
        if index == 0:
            while self._held and self._held[0][1]:
                self._held.popleft()
            self.ack = self._held[0][0] if self._held else self.next
            self.ack_pending = True

    def restart(self) -> None:
        """A fresh sequence space: start at seq 0, forget held frames."""
        self.next = 0
        self.ack = 0
        self._held.clear()
        self._epoch += 1  # receipts of the old numbering must not release new frames
