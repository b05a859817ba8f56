"""The C device's retransmission timers on a slow line (config.line_bytes_per_s): against the
Python gateway `Link` over the simulated line of tests/protocol/simnet.py serializing bytes at
115200 baud, a host stall of the gateway costs at most one resent window per backoff step, not
a go-back-N collapse (PROTOCOL.md section 6, "Timers on a slow line")."""

from __future__ import annotations

import random

import pytest

from firmware_protocol import Link, LinkConfig, MessageReceived, Role, StartTask, TaskOutput
from tests.protocol.simnet import LossyChannel, Simulation

from .clib import CDevice, Library, Timers

UART_115200 = 11520  # bytes/s: 8N1 at 115200 baud
GATEWAY = LinkConfig(max_frame=1024, window=4, heartbeat_interval=5.0, link_lost_timeout=15.0)
LINES = 3000  # "line 00000\n" ... : 33 KB, three seconds of line


def transfer(library: Library, line_rate: int, stall_at: float | None) -> tuple[CDevice, bytes]:
    received: list[TaskOutput] = []

    def on_events(side: str, events: list[object], now: float) -> None:
        for e in events:
            if isinstance(e, MessageReceived) and isinstance(e.message, TaskOutput):
                received.append(e.message)

    rng = random.Random(1)
    device = CDevice(
        library,
        apps="lines",
        # Timers as short as a USB firmware may have them: without the line rate they cannot
        # tell a frame still waiting for the UART from a lost one (the transfer never ends).
        timers=Timers(rto_initial=100, rto_min=20, heartbeat=5000, line_rate=line_rate),
    )
    sim = Simulation(
        Link(Role.GATEWAY, GATEWAY, session_id=7),
        device,  # type: ignore[arg-type]  # Link-shaped
        LossyChannel(rng, delay=0.001, rate=UART_115200),
        LossyChannel(rng, delay=0.001, rate=UART_115200),
        on_events,  # type: ignore[arg-type]
    )
    sim.start()
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and device.is_up)
    sim.gateway.send(StartTask(1, "pod-1/lines", "lines", ("lines", str(LINES))), sim.now)
    sim.flush()
    start = sim.now
    total = LINES * 11
    stalled = stall_at is None
    while sum(len(m.data) for m in received) < total:
        assert sim.now - start < 120, "transfer did not finish"
        if not stalled and sim.now - start >= (stall_at or 0):
            sim.to_gateway.hold_until = sim.now + 1.5
            stalled = True
        sim.run_until(sim.now + 0.01)
    data = b""
    for chunk in received:
        assert chunk.offset == len(data), f"gap or repeat at {chunk.offset}"
        data += chunk.data
    return device, data


def test_a_window_on_a_slow_line_is_not_resent_before_it_has_left(library: Library) -> None:
    """4 frames of 512 bytes take 0.18 s to leave at 115200 baud, the timer's first value is
    0.1 s and its floor 20 ms: counted from departure, no frame is sent twice."""
    device, data = transfer(library, UART_115200, stall_at=None)
    assert data == b"".join(b"line %05d\n" % i for i in range(LINES))
    assert device.stats["retransmits"] == 0


@pytest.mark.parametrize("stall_at", [0.5, 1.0])
def test_a_host_stall_costs_a_window_per_backoff_step_not_a_collapse(
    library: Library, stall_at: float
) -> None:
    """The gateway stalls 1.5 s: the timer backs off 20, 40, ... 640 ms, resending the 4-frame
    window each time (at most 7 rounds in the stall, one after), and the output arrives exactly
    once."""
    device, data = transfer(library, UART_115200, stall_at=stall_at)
    assert data == b"".join(b"line %05d\n" % i for i in range(LINES))
    assert 0 < device.stats["retransmits"] <= 8 * 4
