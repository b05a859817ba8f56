"""Retransmission timers on a slow line (LinkConfig.line_rate): frames wait behind each other
in the sender's UART buffer, so a timer started when a frame was queued fires before the frame
has even left. The simulated line serializes bytes at the UART's rate; the clock is simulated."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from firmware_protocol import LinkConfig, OutputStream, TaskOutput, max_task_data

from .simnet import LossyChannel, Simulation
from .test_link import Recorder, device_link, gateway_link

UART_115200 = 11520.0  # bytes/s: 8N1 at 115200 baud
TASK_ID = "0b5e1c2a-7d3f-4e6b-9a1c-2f4d6e8a0b1c/0/0"


def bulk_transfer(
    device: LinkConfig, gateway: LinkConfig, frames: int, stall_at: float | None = None
) -> tuple[Simulation, Recorder, list[TaskOutput]]:
    """The device sends `frames` full output frames over a 115200-baud line both ways; the
    gateway's host stalls for 1.5 s at `stall_at` seconds into the transfer, if given."""
    rng = random.Random(1)
    recorder = Recorder()
    sim = Simulation(
        gateway_link(config=gateway),
        device_link(config=device),
        LossyChannel(rng, delay=0.001, rate=UART_115200),
        LossyChannel(rng, delay=0.001, rate=UART_115200),
        recorder,
    )
    sim.start()
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and sim.device.is_up)
    size = max_task_data(min(device.max_frame, gateway.max_frame))
    messages = [
        TaskOutput(TASK_ID, OutputStream.STDOUT, i * size, bytes([i % 256]) * size)
        for i in range(frames)
    ]
    pending = list(messages)
    start = sim.now
    stalled = stall_at is None
    while pending or sim.device.unacked + sim.device.queued:
        assert sim.now - start < 300, "transfer did not finish"
        while pending and sim.device.queued < 2:
            sim.device.send(pending.pop(0), sim.now)
        if not stalled and sim.now - start >= (stall_at or 0):
            sim.to_gateway.hold_until = sim.now + 1.5
            stalled = True
        sim.flush()
        sim.run_until(sim.now + 0.01)
    return sim, recorder, messages


def assert_stream_complete(rec: Recorder, sent: list[TaskOutput]) -> None:
    """Every byte once, in order (the binding frame may have been split in two)."""
    got = [m for m in rec.received("gateway") if isinstance(m, TaskOutput)]
    assert len(got) == len(rec.received("gateway"))
    assert b"".join(m.data for m in got) == b"".join(m.data for m in sent)
    assert [m.offset for m in got] == sorted({m.offset for m in got})


def line_aware(frame: int, window: int) -> tuple[LinkConfig, LinkConfig]:
    timers = LinkConfig(heartbeat_interval=5.0, link_lost_timeout=15.0)
    device = replace(timers, max_frame=frame, window=window, line_rate=UART_115200)
    return device, replace(timers, max_frame=frame, window=window)


@pytest.mark.parametrize(("frame", "window"), [(256, 4), (2048, 4), (2048, 8), (4096, 8)])
def test_a_window_the_line_drains_slower_than_one_rto_is_never_resent(
    frame: int, window: int
) -> None:
    """4 or 8 frames of 2-4 KB take 0.7-2.8 s to cross at 115200 baud, far beyond the initial
    0.5 s timeout: counted from when each frame has left the line, no timer fires."""
    device, gateway = line_aware(frame, window)
    sim, rec, sent = bulk_transfer(device, gateway, frames=24)
    assert_stream_complete(rec, sent)
    assert sim.device.stats.retransmits == 0
    # RTT samples leave out the frame's own time on the line (a 2 KB frame: 0.18 s).
    assert sim.device.srtt is not None and sim.device.srtt < 0.05


@pytest.mark.parametrize(("frame", "window"), [(256, 4), (1024, 4), (2048, 4), (2048, 8)])
def test_a_host_stall_costs_one_window_not_a_collapse(frame: int, window: int) -> None:
    """The gateway's host stalls for 1.5 s mid-transfer (the 2048-byte benchmark run that fell
    to 276 B/s): the timer fires and resends the window, backing off (0.1, 0.2, 0.4, 0.8 s:
    at most 4 rounds in the stall, and one after it). The resent frames queue behind the
    originals; were the timer counted from queueing it would keep firing while the line drains
    copies of copies (go-back-N congestion collapse: 22 rounds at 1 KB frames)."""
    device, gateway = line_aware(frame, window)
    sim, rec, sent = bulk_transfer(device, gateway, frames=48, stall_at=1.0)
    assert_stream_complete(rec, sent)
    assert 0 < sim.device.stats.retransmits <= 5 * window
