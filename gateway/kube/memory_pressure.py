"""A node's MemoryPressure condition from what its device reports, as the kubelet's eviction
manager decides it: pressure as soon as free memory falls below a threshold (here a share of
the device's total, as the kubelet's `memory.available<10%` form), and no pressure again only
once none was seen for a transition period (evictionPressureTransitionPeriod, 5 minutes), so a
device hovering at the threshold does not flap. With pressure the node lifecycle controller
taints the node `node.kubernetes.io/memory-pressure:NoSchedule`: no new pods go there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

SUFFICIENT = "the device reports no memory figures"


class MemoryPressure:
    def __init__(
        self,
        percent: float,
        transition_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.percent = percent  # 0: never
        self.transition_s = transition_s
        self.clock = clock
        self.pressure = False
        self.since = datetime.now(UTC)
        self.message = SUFFICIENT
        self._seen_at: float | None = None  # clock of the last reading under the threshold

    def observe(self, used: int, total: int) -> bool:
        """A reading (bytes in use, of `total`); True if the condition's status changed."""
        if total <= 0 or self.percent <= 0:
            return False  # no total to compare with, or the check is off
        free = max(total - used, 0)
        share = 100.0 * free / total
        now = self.clock()
        under = share < self.percent
        if under:
            self._seen_at = now
        self.message = (
            f"the device reports {free / 1024:.1f} KiB free of {total / 1024:.1f} KiB "
            f"({share:.0f}%; pressure below {self.percent:g}%)"
        )
        pressure = under or (
            self.pressure and self._seen_at is not None and now - self._seen_at < self.transition_s
        )
        if pressure == self.pressure:
            return False
        self.pressure = pressure
        self.since = datetime.now(UTC)
        return True
