"""The heartbeat of an up link: when to PING, what a PONG carries, and the RTT a PONG proves.

Pure bookkeeping for ``Link``, which writes the frames. Both ends PING every interval. The
gateway lets its PING ride with every second PONG it owes the device when both are due close
together: a steady link then costs the gateway one write per device PING and one PONG to read
every second interval (PROTOCOL.md section 7).

PING and PONG payloads are built here as msgpack maps directly, the bytes ``Ping(...)`` and
``Pong(...).to_bytes()`` give (a test holds them equal): one is sent per interval per device.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .budget import fit_load
from .constants import Role
from .messages import Load


class Heartbeat:
    """``next_ping``: when this side's next PING is due, None while the link is not up."""

    def __init__(self, role: Role, interval: float) -> None:
        self.role = role
        #: PING period; a device takes the gateway's from WELCOME.
        self.interval = interval
        self.next_ping: float | None = None
        self._peer_ping_at: float | None = None  # gateway: when the device last pinged
        self._rode = False  # gateway: our PING rode with the last PONG
        self._nonce = 0
        self._sent_at: float | None = None
        #: Device: the load attached to PONGs.
        self.load: Load | None = None
        # (load, frame limit, the PONG's load map for that limit): PONGs reuse the trimming.
        self._fitted: tuple[Load, int, dict[int, Any]] | None = None

    def start(self, now: float) -> None:
        """The link came up: first PING one interval from now, no PING outstanding."""
        self.next_ping = now + self.interval
        self._peer_ping_at = None
        self._rode = False
        self._sent_at = None

    def stop(self) -> None:
        """The link went down: no PING until it is up again."""
        self.next_ping = None

    def due(self, now: float) -> bool:
        """True if this side should PING now.

        Gateway: not when the device pinged within the last interval; its next PING is due by
        then, and ours rides with the answer (see ``rides_with_pong``)."""
        if self.next_ping is None or now < self.next_ping:
            return False
        peer = self._peer_ping_at
        if self.role is not Role.GATEWAY or peer is None or now - peer >= self.interval:
            return True
        self.next_ping = peer + self.interval * 1.25
        return False

    def ping(self, now: float, *, riding: bool = False) -> bytes:
        """The payload of the PING to send now; the next is due an interval later (a quarter
        more when it rode with a PONG, so that the device's next PING comes first again)."""
        self._nonce = (self._nonce + 1) & 0xFFFFFFFF
        self.next_ping = now + self.interval * (1.25 if riding else 1.0)
        payload: bytes = msgpack.packb({1: self._nonce}, use_bin_type=True)
        return payload

    def sent(self, at: float) -> None:
        """The PING has left the line at ``at``: its PONG measures the round trip from there."""
        self._sent_at = at

    def pong(self, nonce: int, send_limit: int) -> bytes:
        """The payload of the answer to a PING of ``nonce``; a device's carries its load,
        trimmed to the frame limit."""
        load = self.load if self.role is Role.DEVICE else None
        if load is None:
            wired: dict[int, Any] | None = None
        else:
            fitted = self._fitted
            if fitted is None or fitted[0] is not load or fitted[1] != send_limit:
                # Per-task figures of many tasks would not fit: send those that do.
                trimmed = fit_load(load, send_limit) if load.tasks else load
                fitted = self._fitted = (load, send_limit, trimmed.to_wire())
            wired = fitted[2]
        payload: bytes = msgpack.packb({1: nonce, 2: wired}, use_bin_type=True)
        return payload

    def rides_with_pong(self, now: float) -> bool:
        """Gateway, having answered the device's PING: True if our own PING should go in the
        same write. It rides with every second PONG, when it is due within half an interval:
        the device's PONG (its load, our RTT sample) comes back every second interval, and
        the device still hears from us every interval (the PONGs). The PONG in between goes
        alone and puts our PING off to 1.25 intervals after it, so a device that stops
        pinging still gets one by then."""
        if self.role is not Role.GATEWAY or self.next_ping is None:
            return False
        self._peer_ping_at = now
        if self._rode:
            self._rode = False
            self.next_ping = now + self.interval * 1.25
            return False
        self._rode = self.next_ping - now <= self.interval / 2
        return self._rode

    def answered(self, nonce: int, now: float) -> float | None:
        """The round trip a PONG of ``nonce`` proves, None for an old or foreign PONG."""
        if self._sent_at is None or nonce != self._nonce:
            return None
        rtt = max(now - self._sent_at, 0.0)
        self._sent_at = None
        return rtt
