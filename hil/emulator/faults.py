"""Line faults: what a bad cable, a noisy UART or a slow USB hub does to frames.

Faults act on whole frames (the bytes up to and including a 0x00 delimiter, which COBS framing
guarantees appears only at frame ends): drop or duplicate a frame, flip bits in its bytes, hold
it back for a while. They apply to both directions. With no fault set, bytes pass untouched.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FaultSettings:
    drop: float = 0.0  # probability a frame vanishes
    corrupt: float = 0.0  # probability each byte gets one bit flipped
    duplicate: float = 0.0  # probability a frame is delivered twice
    delay_ms: float = 0.0  # extra latency added to every frame

    def __post_init__(self) -> None:
        for name in ("drop", "corrupt", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: probability must be within [0, 1], got {value}")
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms: must be >= 0, got {self.delay_ms}")

    @property
    def active(self) -> bool:
        return bool(self.drop or self.corrupt or self.duplicate or self.delay_ms)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in data.items():
            # true would pass float() as 1.0: a typo must not turn on a fault.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}: expected a number, got {value!r}")
        return cls(**{k: float(v) for k, v in data.items()})

    def to_mapping(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class FaultyLine:
    """One direction of the line. `feed()` bytes in; they come out via `deliver`."""

    def __init__(self, deliver: Callable[[bytes], None], rng: random.Random) -> None:
        self._deliver = deliver
        self._rng = rng
        self.settings = FaultSettings()
        self._partial = bytearray()
        self._delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        self.dropped = 0
        self.duplicated = 0
        self.corrupted_bytes = 0

    def feed(self, data: bytes, now: float) -> None:
        if not self.settings.active and not self._partial and not self._delayed:
            self._deliver(data)  # fast path: a clean line costs nothing
            return
        self._partial += data
        while True:
            end = self._partial.find(0)
            if end < 0:
                break
            frame = bytes(self._partial[: end + 1])
            del self._partial[: end + 1]
            self._frame(frame, now)
        if not self.settings.active and self._partial:
            # Faults were just switched off: do not hold a frame tail hostage.
            tail = bytes(self._partial)
            self._partial.clear()
            self._emit(tail, now)

    def _frame(self, frame: bytes, now: float) -> None:
        s = self.settings
        if s.drop and self._rng.random() < s.drop:
            self.dropped += 1
            return
        if s.corrupt:
            frame = self._corrupt(frame, s.corrupt)
        self._emit(frame, now)
        if s.duplicate and self._rng.random() < s.duplicate:
            self.duplicated += 1
            self._emit(frame, now)

    def _corrupt(self, frame: bytes, rate: float) -> bytes:
        out = bytearray(frame)
        # Geometric skipping: cost proportional to the number of flips, not of bytes.
        i = self._skip(rate)
        while i < len(out):
            out[i] ^= 1 << self._rng.randrange(8)
            self.corrupted_bytes += 1
            i += 1 + self._skip(rate)
        return bytes(out)

    def _skip(self, rate: float) -> int:
        if rate >= 1.0:
            return 0
        return int(math.log(1.0 - self._rng.random()) / math.log(1.0 - rate))

    def _emit(self, data: bytes, now: float) -> None:
        if self.settings.delay_ms or self._delayed:
            self._delayed.append((now + self.settings.delay_ms / 1000.0, data))
        else:
            self._deliver(data)

    def next_deadline(self) -> float | None:
        return self._delayed[0][0] if self._delayed else None

    def on_timer(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            self._deliver(self._delayed.popleft()[1])

    def reset(self) -> None:
        """Forget bytes in flight (the cable was pulled)."""
        self._partial.clear()
        self._delayed.clear()


@dataclass(slots=True)
class Misbehaviour:
    """Firmware bugs and hostility (not line faults), to test the gateway's defences."""

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], base: Misbehaviour | None = None
    ) -> Misbehaviour:
        """`base` (default: none) with the given fields changed; unknown names are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown misbehaviour(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in data.items():
            if not isinstance(value, bool):
                raise ValueError(f"{key}: expected true or false, got {value!r}")
        return dataclasses.replace(base or cls(), **data)

    def to_mapping(self) -> dict[str, bool]:
        return dataclasses.asdict(self)

    #: Every TASK_LIST claims another page (`next_cursor` = cursor + 1), forever.
    endless_task_list: bool = False
    #: Keep the link's queue full of TASK_OUTPUT for random task ids nobody started (one in
    #: eight an unsolicited TASK_STARTED), half of the ids shaped like the gateway's own
    #: (`<uuid>/<container>/<restart>`).
    foreign_output: bool = False
