"""Round-trip time estimate and retransmission timeout (Jacobson/Karels, RFC 6298 style)."""

from __future__ import annotations

from dataclasses import dataclass, field

# RFC 6298 gains: alpha = 1/8 for the mean, beta = 1/4 for the deviation, K = 4 deviations.
_ALPHA = 0.125
_BETA = 0.25
_K = 4.0


@dataclass
class RttEstimator:
    """Smoothed RTT and the retransmission timeout derived from it.

    Feed only samples from frames sent once (Karn's rule); ``backoff()`` doubles the timeout
    after a retransmission until a fresh sample arrives.
    """

    initial_rto: float
    min_rto: float
    max_rto: float
    srtt: float | None = None
    rttvar: float = 0.0
    samples: int = 0
    _rto: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._rto = self._clamp(self.initial_rto)

    @property
    def rto(self) -> float:
        return self._rto

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        self.samples += 1
        self._rto = self._clamp(self.srtt + _K * self.rttvar)

    def backoff(self) -> None:
        self._rto = self._clamp(self._rto * 2)

    def keep_at_least(self, rto: float) -> None:
        """Keep a backed-off timeout after a sample that says nothing about our frames."""
        self._rto = max(self._rto, self._clamp(rto))

    def restore(self) -> None:
        """Undo backoff once the peer acknowledges progress: the path works again, and on a
        lossy serial line keeping a doubled timeout until a clean sample stalls the link."""
        if self.srtt is None:
            self._rto = self._clamp(self.initial_rto)
        else:
            self._rto = self._clamp(self.srtt + _K * self.rttvar)

    def _clamp(self, value: float) -> float:
        return min(max(value, self.min_rto), self.max_rto)
