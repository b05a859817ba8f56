"""/stats/summary: the kubelet's Summary API (stats/v1alpha1) JSON from provider figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.kubelet.stats import ContainerStats, NodeStats, PodStats
from gateway.logs import format_rfc3339nano

JsonObject = dict[str, Any]


def summary_json(node: NodeStats) -> JsonObject:
    at = format_rfc3339nano(node.sample_time_ns)
    return {
        "node": {
            "nodeName": node.node_name,
            "startTime": _seconds_time(node.start_time_ns),
            "cpu": _cpu(at, node.cpu_usage_nano_cores, node.cpu_usage_core_ns),
            "memory": {
                **_memory(at, node.memory_working_set_bytes, node.memory_usage_bytes),
                "availableBytes": node.memory_available_bytes,
            },
            "systemContainers": [],
        },
        "pods": [_pod(at, pod) for pod in node.pods],
    }


def merge_nodes(nodes: Sequence[NodeStats], name: str, now_ns: int) -> NodeStats:
    """One node's worth of figures for a listener that serves several: the sums."""
    return NodeStats(
        node_name=name,
        start_time_ns=min((n.start_time_ns for n in nodes), default=now_ns),
        sample_time_ns=max((n.sample_time_ns for n in nodes), default=now_ns),
        cpu_usage_core_ns=sum(n.cpu_usage_core_ns for n in nodes),
        cpu_usage_nano_cores=sum(n.cpu_usage_nano_cores for n in nodes),
        memory_working_set_bytes=sum(n.memory_working_set_bytes for n in nodes),
        memory_usage_bytes=sum(n.memory_usage_bytes for n in nodes),
        memory_available_bytes=sum(n.memory_available_bytes for n in nodes),
        pods=tuple(pod for n in nodes for pod in n.pods),
    )


def _pod(at: str, pod: PodStats) -> JsonObject:
    containers = pod.containers
    return {
        "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "startTime": _seconds_time(pod.start_time_ns),
        "containers": [_container(at, c) for c in containers],
        "cpu": _cpu(
            at,
            sum(c.cpu_usage_nano_cores for c in containers),
            sum(c.cpu_usage_core_ns for c in containers),
        ),
        "memory": _memory(
            at,
            sum(c.memory_working_set_bytes for c in containers),
            sum(c.memory_usage_bytes for c in containers),
        ),
    }


def _container(at: str, container: ContainerStats) -> JsonObject:
    return {
        "name": container.name,
        "startTime": _seconds_time(container.start_time_ns),
        "cpu": _cpu(at, container.cpu_usage_nano_cores, container.cpu_usage_core_ns),
        "memory": _memory(at, container.memory_working_set_bytes, container.memory_usage_bytes),
    }


def _cpu(at: str, nano_cores: int, core_ns: int) -> JsonObject:
    return {"time": at, "usageNanoCores": nano_cores, "usageCoreNanoSeconds": core_ns}


def _memory(at: str, working_set: int, usage: int) -> JsonObject:
    return {"time": at, "workingSetBytes": working_set, "usageBytes": usage}


def _seconds_time(ns: int) -> str:
    # metav1.Time has second precision on the wire.
    return format_rfc3339nano(ns - ns % 1_000_000_000)
