"""MemoryPressure from a device's figures, as the kubelet's eviction manager decides it."""

from __future__ import annotations

from gateway.kube.memory_pressure import MemoryPressure

KIB = 1024


def test_pressure_at_once_and_relief_only_after_the_transition_period() -> None:
    now = [0.0]
    memory = MemoryPressure(10, 300, clock=lambda: now[0])

    def pressure() -> bool:  # read afresh (mypy would narrow the attribute between asserts)
        return memory.pressure

    assert not memory.observe(50 * KIB, 64 * KIB) and not pressure()  # 22% free
    assert memory.observe(60 * KIB, 64 * KIB) and pressure()  # 6% free: at once
    assert memory.message == "the device reports 4.0 KiB free of 64.0 KiB (6%; pressure below 10%)"
    now[0] = 100.0
    assert not memory.observe(10 * KIB, 64 * KIB) and pressure()  # free again: not yet
    now[0] = 250.0
    assert not memory.observe(63 * KIB, 64 * KIB)  # pressure seen again: the period restarts
    now[0] = 549.0
    assert not memory.observe(0, 64 * KIB) and pressure()
    now[0] = 550.0
    assert memory.observe(0, 64 * KIB) and not pressure()
    assert memory.message.startswith("the device reports 64.0 KiB free")


def test_a_device_using_more_than_it_has_is_under_pressure_and_zero_turns_it_off() -> None:
    assert MemoryPressure(10, 300).observe(5000, 2048)  # a firmware that misreports its total
    off = MemoryPressure(0, 300)
    assert not off.observe(5000, 2048) and not off.pressure
    assert not MemoryPressure(10, 300).observe(100, 0)  # no total reported
