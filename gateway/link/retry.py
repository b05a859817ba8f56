"""Delays between retries (a device reconnect, an API call): capped exponential backoff with
full jitter. (A container's restart back-off is another concept: gateway.runtime.backoff.)

Full jitter (a uniform pick in [0, cap]) spreads out a hundred devices that lost their hub at
the same moment, so they do not all hammer the bus again in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before each retry of something that failed."""

    initial: float = 0.1  # first retry delay ceiling, seconds
    maximum: float = 5.0  # delay ceiling after many failures, seconds
    factor: float = 2.0  # ceiling growth per consecutive failure
    jitter: float = 1.0  # 0: exact delays; 1: full jitter in [0, ceiling]


class Backoff:
    """Delay before the next attempt; `reset()` after a success."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        p = self.policy
        ceiling = min(p.maximum, p.initial * p.factor**self.failures)
        self.failures += 1
        low = ceiling * (1.0 - p.jitter)
        return low + (ceiling - low) * self._rng.random()

    def reset(self) -> None:
        self.failures = 0
