"""A simulated serial line between two Links: pure code, fake clock, seeded RNG.

Each direction drops, duplicates, delays (so reorders) and bit-flips whole frames. The
``Simulation`` runs both links event by event, so hours of link time take milliseconds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_protocol import Event, Link


@dataclass
class LossyChannel:
    rng: random.Random
    loss: float = 0.0
    duplicate: float = 0.0
    bit_error_rate: float = 0.0
    delay: float = 0.005
    jitter: float = 0.0
    #: False: the line is cut (everything sent is lost).
    connected: bool = True
    #: Bytes per second the line carries (a UART: baud / 10); 0: no serialization time. Frames
    #: queue behind each other as in a UART's transmit buffer and arrive when their last byte
    #: has crossed.
    rate: float = 0.0
    #: Nothing is delivered before this time (the receiving host stalls; bytes wait in its
    #: buffers and arrive together).
    hold_until: float = 0.0
    _in_flight: list[tuple[float, int, bytes]] = field(default_factory=list)
    _counter: int = 0
    _line_free_at: float = 0.0

    def send(self, data: bytes, now: float) -> None:
        if not data or not self.connected:
            return
        # Impairments apply per frame, as a noisy UART would hit them.
        for piece in data.split(b"\x00")[:-1]:
            frame = piece + b"\x00"
            if self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                self._schedule(self._corrupt(frame), now)

    def _corrupt(self, frame: bytes) -> bytes:
        if self.bit_error_rate <= 0:
            return frame
        buf = bytearray(frame)
        bits = len(buf) * 8
        # Geometric skipping: draw the distance to the next flipped bit.
        position = self._next_error_gap()
        while position < bits:
            buf[position // 8] ^= 1 << (position % 8)
            position += 1 + self._next_error_gap()
        return bytes(buf)

    def _next_error_gap(self) -> int:
        import math

        u = self.rng.random()
        return int(math.log(1 - u) / math.log(1 - self.bit_error_rate))

    def _schedule(self, frame: bytes, now: float) -> None:
        if self.rate > 0:
            self._line_free_at = max(self._line_free_at, now) + len(frame) / self.rate
            now = self._line_free_at
        at = now + self.delay + self.rng.random() * self.jitter
        self._counter += 1
        heapq.heappush(self._in_flight, (at, self._counter, frame))

    def next_delivery(self) -> float | None:
        return max(self._in_flight[0][0], self.hold_until) if self._in_flight else None

    def pop_due(self, now: float) -> bytes:
        out = bytearray()
        if now < self.hold_until:
            return b""
        while self._in_flight and self._in_flight[0][0] <= now:
            out += heapq.heappop(self._in_flight)[2]
        return bytes(out)

    def clear(self) -> None:
        self._in_flight.clear()


EventSink = Callable[[str, list[Event], float], None]


@dataclass
class Simulation:
    """Runs a gateway link ``a`` and a device link ``b`` joined by two channels."""

    gateway: Link
    device: Link
    to_device: LossyChannel
    to_gateway: LossyChannel
    on_events: EventSink
    now: float = 0.0
    steps: int = 0

    def start(self) -> None:
        self.on_events("gateway", self.gateway.start(self.now), self.now)
        self.on_events("device", self.device.start(self.now), self.now)
        self.flush()

    def flush(self) -> None:
        self.to_device.send(self.gateway.data_to_send(), self.now)
        self.to_gateway.send(self.device.data_to_send(), self.now)

    def replace_gateway(self, link: Link) -> None:
        self.gateway = link
        self.on_events("gateway", link.start(self.now), self.now)
        self.flush()

    def replace_device(self, link: Link) -> None:
        self.device = link
        self.on_events("device", link.start(self.now), self.now)
        self.flush()

    def run_until(self, deadline: float, stop: Callable[[], bool] = lambda: False) -> None:
        while self.now < deadline and not stop():
            times = [
                t
                for t in (
                    self.gateway.next_deadline(),
                    self.device.next_deadline(),
                    self.to_device.next_delivery(),
                    self.to_gateway.next_delivery(),
                )
                if t is not None
            ]
            if not times:
                self.now = deadline
                break
            self.now = max(self.now, min(*times, deadline))
            self.step()

    def step(self) -> None:
        self.steps += 1
        if self.steps > 2_000_000:
            raise RuntimeError("simulation does not converge")
        now = self.now
        data = self.to_device.pop_due(now)
        if data:
            self.on_events("device", self.device.receive_data(data, now), now)
        data = self.to_gateway.pop_due(now)
        if data:
            self.on_events("gateway", self.gateway.receive_data(data, now), now)
        for name, link in (("gateway", self.gateway), ("device", self.device)):
            due = link.next_deadline()
            if due is not None and due <= now:
                self.on_events(name, link.on_timer(now), now)
        self.flush()
