"""The kubelet's back-offs: container restarts (immediate first restart, then 10 s doubling to
5 min) and image pulls (10 s doubling to 5 min; for a device, an app it does not offer).

A container that ran longer than `reset_after_s` since its last restart starts over at the
initial delay. All three numbers are config so tests can make them short.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float = 10.0  # kubelet: initial container restart back-off
    max_s: float = 300.0  # kubelet: MaxContainerBackOff
    reset_after_s: float = 600.0  # kubelet: back-off resets after 2 x max without a crash


class RestartBackoff:
    """Per container: how long to wait before the next restart."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.delay = 0.0
        self.last_start: float | None = None

    def started(self, now: float) -> None:
        self.last_start = now

    def next_delay(self, now: float) -> float:
        """Delay before restarting a container that just finished at `now`."""
        if self.last_start is not None and now - self.last_start >= self.policy.reset_after_s:
            self.delay = 0.0
        current = self.delay
        self.delay = min(
            self.policy.initial_s if current == 0.0 else current * 2, self.policy.max_s
        )
        return current


class PullBackoff:
    """Per container: how long to wait before asking again for an app the device lacked (the
    kubelet's image pull back-off, same numbers as the restart back-off)."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self._next = policy.initial_s

    def next_delay(self) -> float:
        current = self._next
        self._next = min(current * 2, self.policy.max_s)
        return current
