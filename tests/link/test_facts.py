"""`device_load`: the device's load reports, CPU time integrated from the reported rate."""

from __future__ import annotations

import firmware_protocol as wire
from gateway.link.events import TaskLoadFigures
from gateway.link.facts import device_load


def test_cpu_time_integrates_the_previous_rate_over_the_time_since() -> None:
    first = device_load(None, wire.Load(mem_used=100, cpu_permille=500), now_ns=1_000_000_000)
    assert first.cpu_core_ns == 0 and first.memory_bytes == 100
    busy = wire.Load(cpu_permille=250, tasks=(wire.TaskLoad("t", 250, 64),))
    second = device_load(first, busy, now_ns=3_000_000_000)
    assert second.cpu_core_ns == 1_000_000_000  # half a core for two seconds
    assert second.cpu_millicores == 250
    assert second.tasks == {"t": TaskLoadFigures(250, 64)}
    third = device_load(second, wire.Load(), now_ns=7_000_000_000)
    assert third.cpu_core_ns == 2_000_000_000  # plus a quarter core for four seconds
