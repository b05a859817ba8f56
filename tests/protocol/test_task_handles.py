"""Task handles (feature TASK_HANDLES): output travels as TASK_DATA with a one-byte handle, the
gateway's application still sees TaskOutput with the task id; negotiated, so a peer without the
feature gets TASK_OUTPUT; bindings die with the sequence space (fresh start) and are re-sent."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytest

from firmware_protocol import (
    FEATURE_TASK_HANDLES,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    LinkConfig,
    MessageRejected,
    MessageType,
    OutputStream,
    TaskData,
    TaskOutput,
    frame_for,
    max_output_data,
    max_task_data,
)

from .simnet import LossyChannel, Simulation
from .test_link import CONFIG, Recorder, device_link, gateway_link

TASK_ID = "0b5e1c2a-7d3f-4e6b-9a1c-2f4d6e8a0b1c/0/0"  # 40 bytes, as the gateway makes them


@dataclass
class TappedChannel(LossyChannel):
    """A channel that also decodes every frame offered to it (before any impairment)."""

    frames: list[Frame] = field(default_factory=list)
    _tap: FrameDecoder = field(default_factory=lambda: FrameDecoder(max_frame=4096))

    def send(self, data: bytes, now: float) -> None:
        self.frames += self._tap.feed(data)
        super().send(data, now)

    def types(self) -> list[int]:
        return [f.type for f in self.frames if f.sequenced]


def handle_sim(
    seed: int = 1,
    *,
    device: LinkConfig = CONFIG,
    gateway: LinkConfig = CONFIG,
    line: Mapping[str, float] | None = None,
) -> tuple[Simulation, Recorder, TappedChannel]:
    rng = random.Random(seed)
    recorder = Recorder()
    impairments = {
        "loss": 0.0,
        "duplicate": 0.0,
        "bit_error_rate": 0.0,
        "jitter": 0.0,
        **(line or {}),
    }

    def channel(cls: type[LossyChannel]) -> LossyChannel:
        return cls(
            rng,
            loss=impairments["loss"],
            duplicate=impairments["duplicate"],
            bit_error_rate=impairments["bit_error_rate"],
            jitter=impairments["jitter"],
        )

    to_gateway = channel(TappedChannel)
    assert isinstance(to_gateway, TappedChannel)
    sim = Simulation(
        gateway_link(config=gateway),
        device_link(config=device),
        channel(LossyChannel),
        to_gateway,
        recorder,
    )
    sim.start()
    sim.run_until(30.0, stop=lambda: sim.gateway.is_up and sim.device.is_up)
    return sim, recorder, to_gateway


def send_all(sim: Simulation, messages: list[TaskOutput], until: float = 120.0) -> None:
    pending = list(messages)
    deadline = sim.now + until
    while sim.now < deadline and (pending or sim.device.unacked + sim.device.queued):
        while pending and sim.device.queued < 8:
            sim.device.send(pending.pop(0), sim.now)
        sim.flush()
        sim.run_until(sim.now + 0.05)
    assert not pending


def task_outputs(rec: Recorder) -> list[TaskOutput]:
    got = rec.received("gateway")
    assert all(isinstance(m, TaskOutput) for m in got)
    return [m for m in got if isinstance(m, TaskOutput)]


def outputs(tasks: int, per_task: int, first: int = 0) -> list[TaskOutput]:
    """Interleaved output of tasks `first`.. `first + tasks - 1`, `per_task` messages each."""
    return [
        TaskOutput(f"{TASK_ID[:-4]}/{t}/0", OutputStream.STDOUT, i * 8, b"line %03d" % i)
        for i in range(per_task)
        for t in range(first, first + tasks)
    ]


LINES = [
    {},
    {"loss": 0.1},
    {"loss": 0.05, "duplicate": 0.05, "jitter": 0.02},
    {"bit_error_rate": 1e-3},
]


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("seed", [1, 2])
def test_output_arrives_exactly_once_as_task_output_though_sent_by_handle(
    seed: int, line: dict[str, float]
) -> None:
    # 150 tasks write once: more than the 128 handles, so handles are rebound mid-session;
    # the last 20 then write by handle, and the first ones get handles again.
    sent = [*outputs(tasks=150, per_task=1), *outputs(tasks=20, per_task=3, first=130)[20:]]
    sent += [replace(m, offset=8) for m in outputs(tasks=5, per_task=1)]
    sim, rec, tap = handle_sim(seed, line=line)
    assert sim.device.task_handles and sim.gateway.task_handles
    send_all(sim, sent)
    assert rec.received("gateway") == sent
    assert rec.of("gateway", MessageRejected) == []
    types = tap.types()
    assert types.count(MessageType.TASK_DATA) > 0
    # Every task's first frame binds its handle; most of the rest travel by handle.
    bindings = [f for f in tap.frames if f.type == MessageType.TASK_OUTPUT]
    assert len({f.seq for f in bindings}) == 155
    assert len({f.seq for f in tap.frames if f.type == MessageType.TASK_DATA}) == 40


def test_task_data_frame_is_the_task_id_shorter() -> None:
    sim, _rec, tap = handle_sim()
    sent = [TaskOutput(TASK_ID, OutputStream.STDOUT, i * 4, b"tick") for i in range(3)]
    send_all(sim, sent)
    binding, *rest = [f for f in tap.frames if f.sequenced]
    assert binding.type == MessageType.TASK_OUTPUT
    assert TaskOutput.from_bytes(binding.payload).handle is not None
    assert [f.type for f in rest] == [MessageType.TASK_DATA] * 2
    full = len(frame_for(sent[1], seq=0, ack=0).raw())
    assert len(rest[0].raw()) == full - len(TASK_ID) - 2 + 1  # str8 header + id -> handle


@pytest.mark.parametrize(
    ("device_features", "gateway_features"), [(0, FEATURE_TASK_HANDLES), (FEATURE_TASK_HANDLES, 0)]
)
def test_a_peer_without_the_feature_gets_task_output(
    device_features: int, gateway_features: int
) -> None:
    """Old firmware (no `features` in HELLO) or an old gateway (none in WELCOME): no TASK_DATA."""
    sim, rec, tap = handle_sim(
        device=replace(CONFIG, features=device_features),
        gateway=replace(CONFIG, features=gateway_features),
    )
    assert not sim.device.task_handles and not sim.gateway.task_handles
    sent = outputs(tasks=3, per_task=5)
    send_all(sim, sent)
    assert rec.received("gateway") == sent
    assert set(tap.types()) == {MessageType.TASK_OUTPUT}
    assert all(TaskOutput.from_bytes(f.payload).handle is None for f in tap.frames if f.sequenced)


def test_bindings_are_sent_again_to_a_new_gateway() -> None:
    """Output kept across a gateway restart (fresh start) was sent by handle to the old gateway;
    the new one knows no binding, so the device binds again before using a handle."""
    sim, _rec, tap = handle_sim()
    first = outputs(tasks=2, per_task=5)
    send_all(sim, first)
    sim.to_gateway.connected = sim.to_device.connected = False
    kept = [replace(m, offset=m.offset + 1000) for m in outputs(tasks=2, per_task=5)]
    for m in kept:
        sim.device.send(m, sim.now)
    sim.run_until(sim.now + 1)  # sent by handle into the cut line
    assert MessageType.TASK_DATA in tap.types()[len(first) :]
    new_rec = Recorder()
    sim.on_events = new_rec
    sim.to_gateway.connected = sim.to_device.connected = True
    sim.to_gateway.clear()
    sim.to_device.clear()
    sim.replace_gateway(gateway_link(session_id=200))
    sim.run_until(sim.now + 20, stop=lambda: sim.device.unacked + sim.device.queued == 0)
    sim.run_until(sim.now + 1)
    assert new_rec.received("gateway") == kept
    assert new_rec.of("gateway", MessageRejected) == []


def test_unbound_handle_is_rejected_naming_the_field() -> None:
    sim, rec, _ = handle_sim()
    stray = frame_for(TaskData(5, OutputStream.STDOUT, 0, b"x"), seq=0, ack=0)
    sim.to_gateway.send(stray.to_bytes(), sim.now)
    sim.run_until(sim.now + 1)
    assert rec.received("gateway") == []
    (rejected,) = rec.of("gateway", MessageRejected)
    assert "TaskData.handle: 5 is not bound" in rejected.error
    errors = [m for m in rec.received("device") if isinstance(m, Error)]
    assert [e.code for e in errors] == [ErrorCode.MALFORMED]


@pytest.mark.parametrize("max_frame", [192, 256, 1024, 4096])
def test_output_sized_for_task_data_fits_every_frame(max_frame: int) -> None:
    """A device sizes output for TASK_DATA; the binding frame (task id and handle) cannot hold
    as much, so the link splits it: every byte arrives, no frame exceeds the limit."""
    config = replace(CONFIG, max_frame=max_frame)
    sim, rec, tap = handle_sim(device=config, gateway=config)
    sent = []
    offset = 0
    for _ in range(4):
        size = max_task_data(max_frame, offset=offset)
        assert size > max_output_data(max_frame, len(TASK_ID), offset=offset)
        sent.append(TaskOutput(TASK_ID, OutputStream.STDOUT, offset, bytes(size)))
        offset += size
    send_all(sim, sent)
    got = task_outputs(rec)
    assert b"".join(m.data for m in got) == b"".join(m.data for m in sent)
    assert [m.offset for m in got] == sorted({m.offset for m in got})
    assert max(len(f.raw()) for f in tap.frames) <= max_frame
