from __future__ import annotations

from gateway.kubelet import ContainerStats, NodeStats, PodStats
from gateway.kubelet.metrics import resource_metrics_text
from gateway.kubelet.summary import merge_nodes, summary_json

T0 = 1_700_000_000_000_000_000


def node(name: str = "node-a", memory: int = 0) -> NodeStats:
    container = ContainerStats(
        "blink", start_time_ns=T0, cpu_usage_core_ns=1_500_000_000, memory_working_set_bytes=2048
    )
    pod = PodStats("default", "blinky", "uid-1", start_time_ns=T0, containers=(container,))
    return NodeStats(
        name,
        start_time_ns=T0,
        sample_time_ns=T0 + 5_000_000_000,
        memory_working_set_bytes=memory,
        pods=(pod,),
    )


def test_summary_shape_and_honest_zeros() -> None:
    summary = summary_json(node())
    assert summary["node"]["nodeName"] == "node-a"
    assert summary["node"]["startTime"] == "2023-11-14T22:13:20Z"
    # The device reported no node-level CPU: zero, not an estimate.
    assert summary["node"]["cpu"] == {
        "time": "2023-11-14T22:13:25Z",
        "usageNanoCores": 0,
        "usageCoreNanoSeconds": 0,
    }
    (pod,) = summary["pods"]
    assert pod["podRef"] == {"name": "blinky", "namespace": "default", "uid": "uid-1"}
    assert pod["cpu"]["usageCoreNanoSeconds"] == 1_500_000_000
    assert pod["memory"]["workingSetBytes"] == 2048
    assert pod["containers"][0]["name"] == "blink"


def test_resource_metrics_text() -> None:
    text = resource_metrics_text(node(memory=4096))
    lines = text.splitlines()
    assert "# TYPE container_cpu_usage_seconds_total counter" in lines
    assert (
        'container_cpu_usage_seconds_total{container="blink",namespace="default",pod="blinky"}'
        " 1.5 1700000005000" in lines
    )
    assert "node_memory_working_set_bytes 4096 1700000005000" in lines
    assert (
        'pod_memory_working_set_bytes{namespace="default",pod="blinky"} 2048 1700000005000' in lines
    )
    assert "resource_scrape_error 0" in lines
    assert text.endswith("\n")


def test_merge_sums_nodes() -> None:
    merged = merge_nodes([node("a", 1), node("b", 2)], "a", now_ns=0)
    assert merged.node_name == "a"
    assert merged.memory_working_set_bytes == 3
    assert len(merged.pods) == 2
