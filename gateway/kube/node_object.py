"""The Node object for one device: name, labels, taint, capacity, addresses, conditions.

Pure functions of the device's facts, the config and the link state; the NodeAgent sends what they
build. Labels follow virtual-kubelet's conventions, device facts go under `wirelet.io/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import __version__
from gateway.config import NodeConfig
from gateway.names import label_value

LABEL_PREFIX = "wirelet.io/"
# The gateway that serves the node (see NodeAgent): one owner at a time.
OWNER_ANNOTATION = f"{LABEL_PREFIX}owner"
# The device's own id, unchanged (the label holds a cleaned form).
DEVICE_ID_ANNOTATION = f"{LABEL_PREFIX}device-id"


@dataclass(frozen=True)
class NodeFacts:
    """What the node needs to know of its device, taken from the handshake and the transport."""

    device_id: str
    vendor: str
    product: str
    serial: str
    firmware_name: str
    firmware_version: str
    transport: str  # "serial" or "usb"
    task_slots: int
    memory_bytes: int
    apps: tuple[str, ...]
    arch: str = "unknown"
    gateway_host: str = ""
    os: str = "none"  # "none" for firmware; an SSH host's `uname -s` (docs/ssh.md)
    cpus: int = 0  # 0: unknown (capacity says 1)
    boot_id: int = 0  # changes at every device boot (nodeInfo.bootID)


def node_labels(name: str, facts: NodeFacts, config: NodeConfig) -> dict[str, str]:
    labels = {
        "type": "virtual-kubelet",
        "kubernetes.io/role": "agent",
        "kubernetes.io/hostname": label_value(name),  # node names are kept <= 63 for this
        "kubernetes.io/os": label_value(facts.os) or "none",  # firmware: none (no DaemonSets)
        "kubernetes.io/arch": label_value(facts.arch) or "unknown",
        f"{LABEL_PREFIX}device-id": label_value(facts.device_id, unique=True),
        f"{LABEL_PREFIX}vendor": label_value(facts.vendor),
        f"{LABEL_PREFIX}product": label_value(facts.product),
        f"{LABEL_PREFIX}serial": label_value(facts.serial),
        f"{LABEL_PREFIX}firmware": label_value(facts.firmware_name),
        f"{LABEL_PREFIX}firmware-version": label_value(facts.firmware_version),
        f"{LABEL_PREFIX}transport": label_value(facts.transport),
        f"{LABEL_PREFIX}gateway": label_value(facts.gateway_host),
    }
    labels.update(config.labels)
    return {k: v for k, v in labels.items() if v}


def node_capacity(facts: NodeFacts, config: NodeConfig) -> dict[str, str]:
    """Capacity from the handshake (task slots → pods, memory), overridden by config."""
    capacity = {
        "cpu": str(facts.cpus or 1),
        "memory": f"{max(facts.memory_bytes // 1024, 0)}Ki",
        "pods": str(max(facts.task_slots, 0)),
    }
    capacity.update(config.capacity_for(facts.device_id))
    return capacity


def ready_condition(
    link_up: bool, reason: str, message: str, now: datetime, since: datetime
) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Ready",
        "status": "True" if link_up else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# The kubelet's reasons when there is no pressure (a device reports no disk or PID figures;
# memory, see memory_condition, when it reports its memory in use).
_NO_PRESSURE_REASON = {
    "MemoryPressure": "KubeletHasSufficientMemory",
    "DiskPressure": "KubeletHasNoDiskPressure",
    "PIDPressure": "KubeletHasSufficientPID",
}


def memory_condition(
    pressure: bool, message: str, now: datetime, since: datetime
) -> dict[str, Any]:
    """MemoryPressure with the kubelet's reasons; the message says what the device reports."""
    return {
        "type": "MemoryPressure",
        "status": "True" if pressure else "False",
        "reason": "KubeletHasInsufficientMemory" if pressure else "KubeletHasSufficientMemory",
        "message": message,
        "lastHeartbeatTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _pressure(kind: str, now: datetime, boot: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "False",
        "reason": _NO_PRESSURE_REASON[kind],
        "message": "the device reports no pressure of this kind",
        "lastHeartbeatTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTransitionTime": boot.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# Sorted, as the API server requires.
DECLARED_FEATURES = ["ExtendWebSocketsToKubelet"]


def node_status(
    facts: NodeFacts,
    config: NodeConfig,
    *,
    node_ip: str,
    kubelet_port: int,
    ready: dict[str, Any],
    now: datetime,
    boot: datetime,
    memory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`memory`: the MemoryPressure condition (memory_condition); None: no pressure reported."""
    capacity = node_capacity(facts, config)
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": [
            ready,
            memory or _pressure("MemoryPressure", now, boot),
            _pressure("DiskPressure", now, boot),
            _pressure("PIDPressure", now, boot),
        ],
        "addresses": [
            {"type": "InternalIP", "address": node_ip},
            {"type": "Hostname", "address": facts.gateway_host or node_ip},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        # The API server then proxies kubectl exec/attach WebSockets to the gateway as they
        # are, instead of translating them to SPDY (which the gateway does not speak).
        "declaredFeatures": DECLARED_FEATURES,
        "nodeInfo": {
            "machineID": facts.device_id,
            "systemUUID": facts.device_id,
            "bootID": f"{facts.boot_id:08x}" if facts.boot_id else "",
            "kernelVersion": f"{facts.firmware_name} {facts.firmware_version}".strip(),
            "osImage": f"{facts.vendor} {facts.product}".strip(),
            "containerRuntimeVersion": f"wirelet://{__version__}",
            "kubeletVersion": f"wirelet-{__version__}",
            "kubeProxyVersion": "",
            "operatingSystem": facts.os,
            "architecture": facts.arch,
        },
    }


def node_manifest(
    name: str,
    facts: NodeFacts,
    config: NodeConfig,
    *,
    owner: str = "",
) -> dict[str, Any]:
    """The Node to create: metadata and spec (status goes through the status subresource)."""
    annotations = {
        f"{LABEL_PREFIX}apps": ",".join(facts.apps),
        DEVICE_ID_ANNOTATION: facts.device_id,
    }
    if owner:
        annotations[OWNER_ANNOTATION] = owner
    spec: dict[str, Any] = {}
    if config.taint is not None:
        taint: dict[str, str] = {"key": config.taint.key, "effect": config.taint.effect}
        if config.taint.value:
            taint["value"] = config.taint.value
        spec["taints"] = [taint]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels(name, facts, config),
            "annotations": annotations,
        },
        "spec": spec,
    }


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{name}"


def node_owner(node: dict[str, Any]) -> str:
    """The gateway recorded as the node's owner ("" when none is)."""
    owner: str = ((node.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION) or ""
    return owner


def manifest_facts_metadata(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The labels and annotations of a node manifest (what the device's facts decide)."""
    meta = manifest["metadata"]
    return {
        "labels": dict(meta.get("labels") or {}),
        "annotations": {
            key: value
            for key, value in (meta.get("annotations") or {}).items()
            if key != OWNER_ANNOTATION
        },
    }
