"""Two Links over a simulated line: exactly-once in-order delivery under loss, duplication,
reordering and bit errors; restarts on either side; silence; refusal; misuse errors."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace

import pytest

from firmware_protocol import (
    Error,
    ErrorCode,
    Event,
    Frame,
    FrameDecoder,
    FrameFlags,
    HeartbeatAnswered,
    Hello,
    Link,
    LinkConfig,
    LinkLost,
    LinkState,
    LinkUp,
    Load,
    Message,
    MessageReceived,
    MessageRejected,
    MessageTooLargeError,
    MessageType,
    OutputStream,
    PeerReset,
    Ping,
    Pong,
    QueueFullError,
    Refused,
    Role,
    StartTask,
    TaskOutput,
    Welcome,
    WrongRoleError,
    frame_for,
    parse,
)

from .simnet import LossyChannel, Simulation

CONFIG = LinkConfig(heartbeat_interval=1.0, link_lost_timeout=3.0, rto_initial=0.2)


def device_link(boot_id: int = 1, config: LinkConfig = CONFIG) -> Link:
    hello = Hello(
        versions=(1,),
        device_id="dev-1",
        boot_id=boot_id,
        firmware_name="test-fw",
        firmware_version="1.0",
        apps=("blink", "echo"),
        task_slots=4,
        memory_total=32768,
        max_frame=512,
        window=4,
    )
    return Link(Role.DEVICE, config, hello=hello)


def gateway_link(session_id: int = 100, config: LinkConfig = CONFIG) -> Link:
    return Link(Role.GATEWAY, config, session_id=session_id)


@dataclass
class Recorder:
    events: dict[str, list[tuple[float, Event]]] = field(
        default_factory=lambda: {"gateway": [], "device": []}
    )

    def __call__(self, side: str, events: list[Event], now: float) -> None:
        self.events[side] += [(now, e) for e in events]

    def of(self, side: str, kind: type) -> list:  # type: ignore[type-arg]
        return [e for _, e in self.events[side] if isinstance(e, kind)]

    def received(self, side: str) -> list[Message]:
        return [e.message for e in self.of(side, MessageReceived)]


def make_sim(
    seed: int, loss: float = 0.0, dup: float = 0.0, ber: float = 0.0, jitter: float = 0.0
) -> tuple[Simulation, Recorder]:
    rng = random.Random(seed)
    recorder = Recorder()

    def channel() -> LossyChannel:
        return LossyChannel(rng, loss=loss, duplicate=dup, bit_error_rate=ber, jitter=jitter)

    sim = Simulation(gateway_link(), device_link(), channel(), channel(), recorder)
    sim.start()
    return sim, recorder


def output(i: int) -> TaskOutput:
    return TaskOutput("task", OutputStream.STDOUT, i * 10, b"line %05d\n" % i)


def request(i: int) -> StartTask:
    return StartTask(i + 1, f"t{i}", "blink", argv=("-n", str(i)))


def pump_traffic(sim: Simulation, count: int, until: float, window_max: int = 4) -> tuple[int, int]:
    """Offer ``count`` messages each way, respecting backpressure, and run to ``until``.
    Returns how many each side got to send (gateway, device)."""
    sent_g = sent_d = 0
    while sim.now < until and not (sent_g == sent_d == count and _idle(sim)):
        while sent_g < count and sim.gateway.queued < 8:
            sim.gateway.send(request(sent_g), sim.now)
            sent_g += 1
        while sent_d < count and sim.device.queued < 8:
            sim.device.send(output(sent_d), sim.now)
            sent_d += 1
        sim.flush()
        sim.run_until(sim.now + 0.05)
        assert sim.gateway.unacked <= window_max
        assert sim.device.unacked <= window_max
    return sent_g, sent_d


def _idle(sim: Simulation) -> bool:
    links = (sim.gateway, sim.device)
    return all(link.unacked + link.queued == 0 for link in links)


def test_handshake_brings_both_sides_up() -> None:
    sim, rec = make_sim(seed=1)
    sim.run_until(1.0)
    (up_g,) = rec.of("gateway", LinkUp)
    (up_d,) = rec.of("device", LinkUp)
    assert up_g.hello.device_id == "dev-1" and up_g.hello.apps == ("blink", "echo")
    assert up_d.welcome.session_id == 100 and up_d.welcome.version == 1
    assert not up_g.resumed and not up_d.resumed
    assert sim.gateway.is_up and sim.device.is_up


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exactly_once_in_order_over_a_bad_line(seed: int) -> None:
    sim, rec = make_sim(seed, loss=0.10, dup=0.02, ber=1e-3, jitter=0.01)
    count = 200
    pump_traffic(sim, count, until=120.0)
    sim.run_until(sim.now + 30, stop=lambda: _idle(sim))
    assert rec.received("device") == [request(i) for i in range(count)]
    assert rec.received("gateway") == [output(i) for i in range(count)]
    stats = (sim.gateway.stats, sim.device.stats)
    assert sum(s.retransmits for s in stats) > 0
    assert sum(s.crc_errors + s.framing_errors for s in stats) > 0
    assert sim.gateway.srtt is not None and 0 < sim.gateway.srtt < 1.0


def test_window_limits_frames_in_flight() -> None:
    small = LinkConfig(window=2, heartbeat_interval=1.0, link_lost_timeout=3.0)
    rng = random.Random(5)
    rec = Recorder()
    sim = Simulation(
        gateway_link(), device_link(config=small), LossyChannel(rng), LossyChannel(rng), rec
    )
    sim.start()
    sim.run_until(0.5)
    assert sim.gateway.window == 2
    pump_traffic(sim, 50, until=10.0, window_max=2)
    assert rec.received("device") == [request(i) for i in range(50)]


def test_heartbeat_measures_rtt_and_carries_load() -> None:
    sim, rec = make_sim(seed=2)
    sim.device.set_load(Load(mem_used=1234, cpu_permille=50))
    sim.run_until(5.0)
    beats = rec.of("gateway", HeartbeatAnswered)
    assert beats and beats[-1].load == Load(mem_used=1234, cpu_permille=50)
    assert beats[-1].rtt == pytest.approx(0.01, abs=1e-6)
    assert rec.of("device", HeartbeatAnswered)[-1].load is None


def frame_log(channel: LossyChannel) -> list[tuple[float, list[int]]]:
    """From now on, every write into ``channel``: when, and the message types of its frames."""
    writes: list[tuple[float, list[int]]] = []
    send = channel.send

    def logging_send(data: bytes, now: float) -> None:
        if data:
            writes.append((now, [f.type for f in FrameDecoder().feed(data)]))
        send(data, now)

    channel.send = logging_send  # type: ignore[method-assign]
    return writes


def test_gateway_pings_with_every_second_pong_once_locked_to_the_devices_pings() -> None:
    """Each device PING gets its PONG at once (the device hears from the gateway every
    interval); the gateway's own PING rides with every second PONG, so the gateway reads the
    device's PONG (load, RTT) every second interval and writes once per device PING."""
    sim, rec = make_sim(seed=2)
    sim.device.set_load(Load(mem_used=1, cpu_permille=1))
    writes = frame_log(sim.to_device)
    sim.run_until(5.0)
    start = sim.now
    beats_before = len(rec.of("gateway", HeartbeatAnswered))
    device_beats_before = len(rec.of("device", HeartbeatAnswered))
    sim.run_until(start + 20.0)
    steady = [types for t, types in writes if t >= start]
    assert 19 <= len(steady) <= 21  # one write per 1 s device PING
    assert all(MessageType.PONG in types for types in steady)
    with_ping = [sorted(types) == sorted([MessageType.PONG, MessageType.PING]) for types in steady]
    assert all(a != b for a, b in itertools.pairwise(with_ping))  # alternating
    answered = [t for t, e in rec.events["gateway"] if isinstance(e, HeartbeatAnswered)]
    assert 9 <= len(answered) - beats_before <= 11
    assert all(b - a <= 2.1 * CONFIG.heartbeat_interval for a, b in itertools.pairwise(answered))
    assert rec.of("gateway", HeartbeatAnswered)[-1].load == Load(mem_used=1, cpu_permille=1)
    # The device still pings on its own clock and gets every answer.
    assert len(rec.of("device", HeartbeatAnswered)) - device_beats_before >= 19


@pytest.mark.parametrize("after_riding", [True, False], ids=["after-pong-with-ping", "after-pong"])
def test_a_device_that_stops_pinging_gets_the_gateways_ping_within_1_25_intervals(
    after_riding: bool,
) -> None:
    """Whichever PONG answered the device's last PING (with the gateway's PING or alone), the
    gateway's PINGs follow within 1.25 intervals of its PONG and of each other: the device,
    which declares the link lost after three intervals of silence, keeps its margin."""
    sim, rec = make_sim(seed=2)
    from_device = frame_log(sim.to_gateway)
    to_device = frame_log(sim.to_device)
    sim.run_until(5.0)

    def device_pinged_and_answered() -> bool:
        pings = [t for t, types in from_device if MessageType.PING in types]
        answers = [t for t, types in to_device if MessageType.PONG in types]
        return bool(pings and answers and answers[-1] > pings[-1] >= 5.0)

    while not (device_pinged_and_answered() and sim.gateway._beat._rode is after_riding):
        sim.run_until(sim.now + 0.001)
    sim.device._next_ping = None  # it answers, never pings again
    last_device_ping = max(t for t, types in from_device if MessageType.PING in types)
    sim.run_until(sim.now + 6.0)
    # Sent by the gateway since: the PONG to that PING, then its own PINGs.
    heard = [t for t, _ in to_device if t > last_device_ping]
    assert len(heard) >= 6
    assert all(
        b - a <= 1.25 * CONFIG.heartbeat_interval + 1e-9 for a, b in itertools.pairwise(heard)
    )
    assert sim.gateway.is_up and sim.device.is_up
    assert not rec.of("device", LinkLost) and not rec.of("gateway", LinkLost)


def test_gateway_pings_on_its_own_when_the_device_does_not() -> None:
    sim, rec = make_sim(seed=2)
    sim.run_until(3.0)
    sim.device._next_ping = None  # a device that only answers
    start = sim.now
    sim.run_until(start + 10.0)
    answered = [t for t, e in rec.events["gateway"] if isinstance(e, HeartbeatAnswered)]
    later = [t for t in answered if t > start]
    assert len(later) >= 7
    assert all(b - a <= 1.3 * CONFIG.heartbeat_interval for a, b in itertools.pairwise(later))
    assert sim.gateway.is_up


def test_silent_peer_is_reported_lost_after_the_timeout() -> None:
    sim, rec = make_sim(seed=3)
    sim.run_until(2.0)
    sim.to_gateway.connected = False
    cut = sim.now
    sim.run_until(cut + 10)
    lost_at = [t for t, e in rec.events["gateway"] if isinstance(e, LinkLost)]
    assert lost_at
    # Last frame heard at most one heartbeat before the cut; lost exactly timeout after it.
    assert cut + CONFIG.link_lost_timeout - CONFIG.heartbeat_interval - 0.1 <= lost_at[0]
    assert lost_at[0] <= cut + CONFIG.link_lost_timeout + 0.1
    assert sim.gateway.state is LinkState.HANDSHAKE


BAD_LINE = {"loss": 0.10, "dup": 0.02, "ber": 1e-3, "jitter": 0.01}
LINES = [
    pytest.param(4, {"loss": 0.05}, id="lossy"),
    *(pytest.param(seed, BAD_LINE, id=f"bad-{seed}") for seed in (11, 12, 13)),
]


@pytest.mark.parametrize(("seed", "line"), LINES)
def test_line_cut_resumes_without_loss_or_repeat(seed: int, line: dict[str, float]) -> None:
    sim, rec = make_sim(seed, **line)
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and sim.device.is_up)
    sent_g, sent_d = pump_traffic(sim, 30, until=sim.now + 3.0)
    sim.to_gateway.connected = sim.to_device.connected = False
    for i in range(10):
        sim.gateway.send(request(sent_g + i), sim.now)
        sim.device.send(output(sent_d + i), sim.now)
    sim.run_until(sim.now + 10)
    assert rec.of("gateway", LinkLost) and rec.of("device", LinkLost)
    sim.to_gateway.connected = sim.to_device.connected = True
    sim.run_until(sim.now + 20, stop=lambda: _idle(sim))
    sim.run_until(sim.now + 1)
    assert rec.of("gateway", LinkUp)[-1].resumed and rec.of("device", LinkUp)[-1].resumed
    assert not rec.of("gateway", PeerReset) and not rec.of("device", PeerReset)
    assert rec.received("device") == [request(i) for i in range(sent_g + 10)]
    assert rec.received("gateway") == [output(i) for i in range(sent_d + 10)]


def test_device_reboot_is_detected_and_pending_commands_handed_back() -> None:
    sim, rec = make_sim(seed=5)
    sim.run_until(1.0)
    sim.to_device.connected = False  # commands pile up unacked
    for i in range(3):
        sim.gateway.send(request(i), sim.now)
    sim.flush()
    sim.to_device.connected = True
    sim.to_device.clear()
    sim.replace_device(device_link(boot_id=2))
    sim.run_until(sim.now + 2)
    (reset,) = rec.of("gateway", PeerReset)
    assert (reset.previous_id, reset.new_id) == (1, 2)
    assert reset.dropped == tuple(request(i) for i in range(3))
    assert not rec.of("gateway", LinkUp)[-1].resumed
    sim.gateway.send(request(10), sim.now)
    sim.device.send(output(0), sim.now)
    sim.flush()
    sim.run_until(sim.now + 1)
    assert rec.received("device") == [request(10)]
    assert rec.received("gateway") == [output(0)]


@pytest.mark.parametrize(("seed", "line"), LINES)
def test_gateway_restart_keeps_device_output(seed: int, line: dict[str, float]) -> None:
    """Output produced while the gateway is gone survives in the device's queue; the new
    gateway gets everything from the first unacked offset on, repeats only at the seam."""
    sim, rec = make_sim(seed, **line)
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and sim.device.is_up)
    _, sent = pump_traffic(sim, 20, until=2.0)
    sim.to_gateway.connected = sim.to_device.connected = False
    for i in range(sent, sent + 20):
        sim.device.send(output(i), sim.now)
    sim.run_until(sim.now + 1)
    old_received = list(rec.received("gateway"))
    new_rec = Recorder()
    sim.on_events = new_rec
    sim.to_gateway.connected = sim.to_device.connected = True
    sim.to_gateway.clear()
    sim.to_device.clear()
    sim.replace_gateway(gateway_link(session_id=200))
    sim.run_until(sim.now + 20, stop=lambda: sim.device.unacked + sim.device.queued == 0)
    sim.run_until(sim.now + 1)
    (reset,) = new_rec.of("device", PeerReset)
    assert (reset.previous_id, reset.new_id) == (100, 200)
    seen: dict[int, bytes] = {}
    for m in [*old_received, *new_rec.received("gateway")]:
        assert isinstance(m, TaskOutput)
        seen.setdefault(m.offset, m.data)
    assert [seen[k] for k in sorted(seen)] == [output(i).data for i in range(sent + 20)]
    new_offsets = [m.offset for m in new_rec.received("gateway") if isinstance(m, TaskOutput)]
    assert new_offsets == sorted(new_offsets)  # in order on the new session


def test_no_common_version_is_refused_on_both_sides() -> None:
    rng = random.Random(7)
    rec = Recorder()
    future = LinkConfig(versions=(2,))
    sim = Simulation(
        gateway_link(), device_link(config=future), LossyChannel(rng), LossyChannel(rng), rec
    )
    sim.start()
    sim.run_until(3.0)
    assert rec.of("device", Refused)[0].by_peer
    assert rec.of("device", Refused)[0].peer_versions == (1,)
    assert not rec.of("gateway", Refused)[0].by_peer
    assert sim.device.state is LinkState.REFUSED
    assert sim.device.next_deadline() is None
    assert not rec.of("gateway", LinkUp)


def _up_pair() -> tuple[Link, Link]:
    sim, _ = make_sim(seed=8)
    sim.run_until(0.5)
    sim.gateway.data_to_send()
    sim.device.data_to_send()
    return sim.gateway, sim.device


def _reply_of(link: Link) -> list[Message]:
    return [parse(f) for f in FrameDecoder().feed(link.data_to_send())]


def test_pings_faster_than_the_transport_takes_bytes_get_one_pong_for_the_latest() -> None:
    """A peer that floods PINGs and does not read: one PONG per write, answering the newest
    PING, instead of a PONG per PING piling up behind a full tty (memory without bound)."""
    gateway, _ = _up_pair()
    flood = b"".join(
        Frame(1, Ping.TYPE, FrameFlags.NONE, 0, 0, Ping(nonce).to_bytes()).to_bytes()
        for nonce in range(1, 5001)
    )
    gateway.receive_data(flood, 1.0)  # nobody drains meanwhile: the transport is full
    pongs = [m for m in _reply_of(gateway) if isinstance(m, Pong)]
    assert [p.nonce for p in pongs] == [5000]
    assert gateway.stats.pings_coalesced == 4999
    gateway.receive_data(
        Frame(1, Ping.TYPE, FrameFlags.NONE, 0, 0, Ping(9).to_bytes()).to_bytes(), 1.1
    )
    assert gateway.has_output
    assert [p.nonce for p in _reply_of(gateway) if isinstance(p, Pong)] == [9]


def test_unknown_sequenced_type_gets_unsupported_error() -> None:
    _, device = _up_pair()
    frame = Frame(1, 0x7E, FrameFlags.SEQ | FrameFlags.ACK, 0, 0, b"\x81\x00\xce\x00\x01\x00\x00")
    events = device.receive_data(frame.to_bytes(), 1.0)
    assert isinstance(events[0], MessageRejected)
    (reply,) = [m for m in _reply_of(device) if isinstance(m, Error)]
    assert reply == Error(65536, ErrorCode.UNSUPPORTED, reply.message, 0x7E)


def test_malformed_payload_gets_malformed_error_naming_the_field() -> None:
    _, device = _up_pair()
    payload = b"\x83\x00\x07\x01\xa1t\x02\x05"  # app is an int
    frame = Frame(1, 0x10, FrameFlags.SEQ | FrameFlags.ACK, 0, 0, payload)
    device.receive_data(frame.to_bytes(), 1.0)
    (reply,) = [m for m in _reply_of(device) if isinstance(m, Error)]
    assert reply.code == ErrorCode.MALFORMED and reply.request_id == 7
    assert "StartTask.app" in reply.message


def test_misuse_raises() -> None:
    gateway, device = _up_pair()
    with pytest.raises(WrongRoleError):
        device.send(request(0), 1.0)
    with pytest.raises(WrongRoleError):
        gateway.send(output(0), 1.0)
    with pytest.raises(MessageTooLargeError):
        device.send(TaskOutput("t", OutputStream.STDOUT, 0, bytes(600)), 1.0)
    small = LinkConfig(max_queue=2)
    lonely = Link(Role.GATEWAY, small, session_id=1)
    lonely.send(request(0), 0.0)
    lonely.send(request(1), 0.0)
    assert lonely.queued == 2 and lonely.credits == 0
    with pytest.raises(QueueFullError):
        lonely.send(request(2), 0.0)


def test_request_handshake_after_reconnect_resumes() -> None:
    sim, rec = make_sim(seed=9)
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and sim.device.is_up)
    sim.to_gateway.connected = sim.to_device.connected = False
    sim.gateway.send(request(0), sim.now)
    sim.device.send(output(0), sim.now)
    sim.flush()
    sim.to_gateway.connected = sim.to_device.connected = True
    # The gateway sees a new connection, with half a frame of the old one left in its buffer.
    sim.gateway.receive_data(b"\x05\x01\x02", sim.now)
    rec("gateway", sim.gateway.request_handshake(sim.now), sim.now)
    sim.flush()
    sim.run_until(sim.now + 30, stop=lambda: _idle(sim))
    assert rec.received("device") == [request(0)]
    assert rec.received("gateway") == [output(0)]
    assert isinstance(rec.of("gateway", LinkLost)[0], LinkLost)
    assert rec.of("gateway", LinkUp)[-1].resumed and rec.of("device", LinkUp)[-1].resumed


def test_delayed_handshake_frames_are_ignored() -> None:
    """A HELLO of an older attempt, or a WELCOME answering another attempt, changes nothing."""
    gateway = gateway_link()
    hello = device_link().peer_hello
    assert hello is not None
    newer = replace(hello, attempt=2, last_session=0)
    gateway.receive_data(frame_for(newer).to_bytes(), 0.0)
    assert gateway.is_up and gateway.data_to_send()
    older = replace(hello, attempt=1)
    assert gateway.receive_data(frame_for(older).to_bytes(), 0.1) == []
    assert gateway.data_to_send() == b""

    device = device_link()
    device.start(0.0)  # attempt 1
    stale = Welcome(1, 100, 512, 4, False, 1000, 3000, attempt=7)
    assert device.receive_data(frame_for(stale).to_bytes(), 0.1) == []
    assert device.state is LinkState.HANDSHAKE
    current = replace(stale, attempt=1)
    assert isinstance(device.receive_data(frame_for(current).to_bytes(), 0.2)[0], LinkUp)


# --- persist-then-ack: the gateway holds TASK_OUTPUT until the application releases it ------


HOLD = (TaskOutput.TYPE,)


@dataclass
class SlowApplication:
    """A gateway application that releases each held message ``delay`` seconds after it
    arrived (as if writing it to disk took that long), and records what arrived."""

    sim: Simulation
    delay: float
    recorder: Recorder = field(default_factory=Recorder)
    due: list[tuple[float, int]] = field(default_factory=list)
    released: int = 0
    #: Where release is withheld altogether (an application that crashes before persisting).
    frozen: bool = False

    def __call__(self, side: str, events: list[Event], now: float) -> None:
        self.recorder(side, events, now)
        if side == "gateway":
            for event in events:
                if isinstance(event, MessageReceived) and event.receipt is not None:
                    self.due.append((now + self.delay, event.receipt))

    def run(self, seconds: float, tick: float = 0.005) -> None:
        end = self.sim.now + seconds
        while self.sim.now < end:
            self.sim.run_until(self.sim.now + tick)
            if self.frozen:
                continue
            ready = [r for t, r in self.due if t <= self.sim.now]
            self.due = [(t, r) for t, r in self.due if t > self.sim.now]
            for receipt in ready:
                self.sim.gateway.release(receipt)
                self.released += 1
            self.sim.flush()


def held_sim(seed: int, delay: float, **line: float) -> SlowApplication:
    rng = random.Random(seed)

    def channel() -> LossyChannel:
        return LossyChannel(
            rng,
            loss=line.get("loss", 0.0),
            duplicate=line.get("dup", 0.0),
            bit_error_rate=line.get("ber", 0.0),
            jitter=line.get("jitter", 0.0),
        )

    gateway = Link(Role.GATEWAY, CONFIG, session_id=100, hold=HOLD)
    sim = Simulation(gateway, device_link(), channel(), channel(), lambda *a: None)
    app = SlowApplication(sim, delay)
    sim.on_events = app
    sim.start()
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and sim.device.is_up)
    return app


def report(i: int) -> Message:
    """Every fifth message a report the gateway does not hold, the rest output."""
    return Error(0, int(ErrorCode.INTERNAL), f"note {i}") if i % 5 == 4 else output(i)


@pytest.mark.parametrize(("seed", "line"), [pytest.param(1, {}, id="clean"), *LINES])
def test_late_release_still_delivers_everything_once_in_order(
    seed: int, line: dict[str, float]
) -> None:
    """Held output is delivered at once, exactly once and in order; the device frees a frame
    only after the application released it and every held frame before it."""
    app = held_sim(seed, delay=0.03, **line)
    sim = app.sim
    count, sent = 120, 0
    deadline = sim.now + 120
    while sim.now < deadline and not (sent == count and _idle(sim)):
        while sent < count and sim.device.queued < 8:
            sim.device.send(report(sent), sim.now)
            sent += 1
        sim.flush()
        app.run(0.02)
        # Acknowledged on the device ⇒ released by the application (or not held at all).
        freed = sent - sim.device.unacked - sim.device.queued
        outputs_freed = sum(1 for i in range(freed) if i % 5 != 4)
        assert outputs_freed <= app.released
    assert app.recorder.received("gateway") == [report(i) for i in range(count)]
    assert sim.gateway.held == 0 and _idle(sim)
    if not line:
        # Releases within an RTO: no retransmission at all, no gap reports.
        assert sim.device.stats.retransmits == 0
        assert sim.device.stats.fast_retransmits == 0


def test_unreleased_output_is_resent_to_a_new_gateway() -> None:
    """A gateway that crashes before releasing: the device keeps the output (retransmitting
    with backoff, not in a storm, and never delivered twice), and the next gateway gets it."""
    app = held_sim(seed=21, delay=0.0)
    app.frozen = True
    sim = app.sim
    for i in range(3):
        sim.device.send(output(i), sim.now)
    sim.device.send(report(4), sim.now)  # not held, but behind held output: not acked either
    sim.flush()
    app.run(5.0)
    expected = [output(0), output(1), output(2), report(4)]
    assert app.recorder.received("gateway") == expected
    assert sim.gateway.held == 4 and sim.device.unacked == 4
    # The device's timer backs off to rto_max: a handful of rounds, not one per RTT.
    assert sim.device.stats.retransmits <= 4 * 6
    assert sim.device.stats.fast_retransmits == 0
    assert sim.gateway.stats.duplicates == sim.device.stats.retransmits

    fresh = Recorder()
    app.recorder = fresh
    app.frozen = False
    app.due.clear()  # the old process's receipts died with it
    sim.replace_gateway(Link(Role.GATEWAY, CONFIG, session_id=200, hold=HOLD))
    app.run(3.0)
    assert fresh.received("gateway") == expected
    assert sim.device.unacked == 0 and sim.gateway.held == 0


def test_release_is_per_message_and_receipts_expire_with_the_sequence_space() -> None:
    app = held_sim(seed=22, delay=0.0)
    app.frozen = True
    sim = app.sim
    for i in range(3):
        sim.device.send(output(i), sim.now)
    sim.flush()
    app.run(0.1)
    receipts = [r for _, r in app.due]
    assert len(receipts) == 3
    sim.gateway.release(receipts[1])  # a later one first: the ack cannot pass the first
    sim.flush()
    app.run(0.1)
    assert sim.device.unacked == 3
    sim.gateway.release(receipts[0])
    sim.flush()
    app.run(0.1)
    assert sim.device.unacked == 1 and sim.gateway.held == 1
    sim.gateway.release(receipts[0])  # repeated: harmless
    # The device reboots: a fresh sequence space; the old receipt must not release new seq 2.
    sim.replace_device(device_link(boot_id=2))
    app.run(1.0)
    for i in range(3):
        sim.device.send(output(i), sim.now)
    sim.flush()
    app.run(0.1)
    assert sim.gateway.held == 3
    sim.gateway.release(receipts[2])
    sim.flush()
    app.run(0.1)
    assert sim.gateway.held == 3 and sim.device.unacked == 3


def test_frames_beyond_the_declared_window_are_dropped_until_the_ack_advances() -> None:
    """A device that ignores the window and keeps sending while its output is held (a slow
    disk): the gateway takes twice the window (slack for a sender that counts differently),
    not everything sent (memory without bound), and what was dropped is taken once released."""
    app = held_sim(seed=3, delay=0.0)
    app.frozen = True
    gateway, first = app.sim.gateway, app.sim.gateway._rx.next

    def output(i: int) -> bytes:
        message = TaskOutput("t", OutputStream.STDOUT, i, b"x")
        flags = FrameFlags.SEQ | FrameFlags.ACK
        return Frame(1, message.TYPE, flags, (first + i) % 65536, 0, message.to_bytes()).to_bytes()

    events = gateway.receive_data(b"".join(output(i) for i in range(100)), 40.0)
    receipts = [e.receipt for e in events if isinstance(e, MessageReceived)]
    limit = 2 * CONFIG.window
    assert len(receipts) == limit
    # The first frame past the limit is an overrun; those after it are ahead of it (a gap).
    assert (gateway.stats.overruns, gateway.stats.out_of_order) == (1, 100 - limit - 1)
    assert receipts[0] is not None
    gateway.release(receipts[0])
    taken = gateway.receive_data(output(limit), 40.1)
    messages = [e.message for e in taken if isinstance(e, MessageReceived)]
    assert messages == [TaskOutput("t", OutputStream.STDOUT, limit, b"x")]
