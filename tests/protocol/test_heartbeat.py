"""The heartbeat's PING and PONG payloads: built as msgpack maps directly, they must be the
bytes the message catalogue gives for the same PING and PONG (the wire does not change)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocol import MIN_FRAME, Load, Ping, Pong, Role
from firmware_protocol.budget import fit_load
from firmware_protocol.heartbeat import Heartbeat

from .strategies import for_struct

FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
NONCES = st.integers(0, 2**32 - 1)


@FAST
@given(st.integers(0, 2**32 - 1))
def test_ping_payload_is_the_pings_bytes(start: int) -> None:
    beat = Heartbeat(Role.GATEWAY, 1.0)
    beat._nonce = start
    payload = beat.ping(0.0)
    assert payload == Ping(beat._nonce).to_bytes()
    assert Ping.from_bytes(payload).nonce == (start + 1) & 0xFFFFFFFF


@FAST
@given(NONCES)
def test_gateway_pong_payload_is_the_pongs_bytes(nonce: int) -> None:
    beat = Heartbeat(Role.GATEWAY, 1.0)
    beat.load = Load(mem_used=5, cpu_permille=5)  # a gateway never sends load
    assert beat.pong(nonce, MIN_FRAME) == Pong(nonce).to_bytes()


@FAST
@given(NONCES, for_struct(Load), st.sampled_from([MIN_FRAME, 512, 4096]))
def test_device_pong_payload_is_the_pongs_bytes_with_the_load_that_fits(
    nonce: int, load: Load, limit: int
) -> None:
    beat = Heartbeat(Role.DEVICE, 1.0)
    assert beat.pong(nonce, limit) == Pong(nonce).to_bytes()
    beat.load = load
    for _ in range(2):  # the second one from the cached trimming
        assert beat.pong(nonce, limit) == Pong(nonce, fit_load(load, limit)).to_bytes()
    assert Pong.from_bytes(beat.pong(nonce, limit)).load == fit_load(load, limit)
