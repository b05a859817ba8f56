"""The Node built for a device: identity labels, taint, capacity from the handshake or config."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.config import NodeConfig, Taint
from gateway.kube.node_object import NodeFacts, node_manifest, node_status, ready_condition

FACTS = NodeFacts(
    device_id="E6614C31",
    vendor="Raspberry Pi",
    product="Pico",
    serial="E6614C31",
    firmware_name="wirelet-fw",
    firmware_version="1.2.3",
    transport="serial",
    task_slots=4,
    memory_bytes=262144,
    apps=("echo", "counter"),
    arch="armv6m",
    gateway_host="lab-host",
)


def test_manifest_has_labels_and_taint() -> None:
    node = node_manifest("wirelet-e6614c31", FACTS, NodeConfig())
    labels = node["metadata"]["labels"]
    assert labels["type"] == "virtual-kubelet"
    assert labels["kubernetes.io/role"] == "agent"
    assert labels["kubernetes.io/hostname"] == "wirelet-e6614c31"
    assert labels["wirelet.io/vendor"] == "Raspberry-Pi"
    assert labels["wirelet.io/firmware-version"] == "1.2.3"
    assert node["spec"]["taints"] == [
        {"key": "virtual-kubelet.io/provider", "value": "wirelet", "effect": "NoSchedule"}
    ]


def test_no_taint_when_config_removes_it() -> None:
    assert node_manifest("n", FACTS, NodeConfig(taint=None))["spec"] == {}
    tainted = node_manifest("n", FACTS, NodeConfig(taint=Taint("k", "", "NoExecute")))
    assert tainted["spec"]["taints"] == [{"key": "k", "effect": "NoExecute"}]


def test_capacity_from_handshake_and_overrides() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ready = ready_condition(True, "KubeletReady", "device link up", now, now)
    status = node_status(
        FACTS, NodeConfig(), node_ip="127.0.0.1", kubelet_port=10250, ready=ready, now=now, boot=now
    )
    assert status["capacity"] == {"cpu": "1", "memory": "256Ki", "pods": "4"}
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    override = NodeConfig(capacity={"pods": "100"}, capacity_per_device={"E6614C31": {"cpu": "2"}})
    status = node_status(
        FACTS, override, node_ip="127.0.0.1", kubelet_port=1, ready=ready, now=now, boot=now
    )
    assert status["allocatable"] == {"cpu": "2", "memory": "256Ki", "pods": "100"}
