"""Lease renewal timing: the kubelet's interval, with the first renewal's phase spread."""

from __future__ import annotations

from gateway.kube.node_agent import renewal_delay


def test_renewals_after_the_first_come_every_interval() -> None:
    assert renewal_delay(10.0, first=False, draw=lambda: 0.0) == 10.0
    assert renewal_delay(10.0, first=False, draw=lambda: 0.99) == 10.0


def test_the_first_renewal_waits_half_to_a_whole_interval() -> None:
    """Devices that came up together must not renew together forever after."""
    assert renewal_delay(10.0, first=True, draw=lambda: 0.0) == 5.0
    assert renewal_delay(10.0, first=True, draw=lambda: 1.0) == 10.0
    delays = {renewal_delay(10.0, first=True) for _ in range(50)}
    assert len(delays) > 40
    assert all(5.0 <= d <= 10.0 for d in delays)
