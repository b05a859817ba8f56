"""Resource figures the provider supplies for /stats/summary and /metrics/resource.

Devices often report nothing about CPU or memory. Every figure defaults to 0 and a 0 is
published as is: the gateway never estimates or invents usage (see docs/kubelet-api.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ContainerStats:
    name: str
    start_time_ns: int
    # Cumulative CPU time in nanoseconds, and the current rate in nano-cores.
    cpu_usage_core_ns: int = 0
    cpu_usage_nano_cores: int = 0
    memory_working_set_bytes: int = 0
    memory_usage_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PodStats:
    namespace: str
    name: str
    uid: str
    start_time_ns: int
    containers: tuple[ContainerStats, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeStats:
    node_name: str
    start_time_ns: int
    # When the figures were sampled (the device's last report, or now).
    sample_time_ns: int
    cpu_usage_core_ns: int = 0
    cpu_usage_nano_cores: int = 0
    memory_working_set_bytes: int = 0
    memory_usage_bytes: int = 0
    memory_available_bytes: int = 0
    pods: tuple[PodStats, ...] = ()
