"""/metrics/resource: the kubelet's resource metrics in Prometheus text format.

The same series names, labels and help texts metrics-server scrapes from a real kubelet.
Samples carry the device's sample time in milliseconds, as the kubelet's do.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.kubelet.stats import NodeStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NS_PER_SECOND = 1_000_000_000


def resource_metrics_text(node: NodeStats) -> str:
    ms = node.sample_time_ns // 1_000_000
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
        lines.append(f"# HELP {name} [STABLE] {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)

    def sample(name: str, labels: dict[str, str], value: float, with_time: bool = True) -> str:
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        label_part = "{" + rendered + "}" if rendered else ""
        suffix = f" {ms}" if with_time else ""
        return f"{name}{label_part} {_number(value)}{suffix}"

    containers = [
        ({"container": c.name, "namespace": p.namespace, "pod": p.name}, c)
        for p in node.pods
        for c in p.containers
    ]
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        (
            sample(
                "container_cpu_usage_seconds_total", labels, c.cpu_usage_core_ns / _NS_PER_SECOND
            )
            for labels, c in containers
        ),
    )
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        (
            sample("container_memory_working_set_bytes", labels, c.memory_working_set_bytes)
            for labels, c in containers
        ),
    )
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        (
            sample("container_start_time_seconds", labels, c.start_time_ns / _NS_PER_SECOND)
            for labels, c in containers
        ),
    )
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        [sample("node_cpu_usage_seconds_total", {}, node.cpu_usage_core_ns / _NS_PER_SECOND)],
    )
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        [sample("node_memory_working_set_bytes", {}, node.memory_working_set_bytes)],
    )
    pods = [({"namespace": p.namespace, "pod": p.name}, p) for p in node.pods]
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        (
            sample(
                "pod_cpu_usage_seconds_total",
                labels,
                sum(c.cpu_usage_core_ns for c in p.containers) / _NS_PER_SECOND,
            )
            for labels, p in pods
        ),
    )
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        (
            sample(
                "pod_memory_working_set_bytes",
                labels,
                sum(c.memory_working_set_bytes for c in p.containers),
            )
            for labels, p in pods
        ),
    )
    family(
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
        [sample("resource_scrape_error", {}, 0, with_time=False)],
    )
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
