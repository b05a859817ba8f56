"""Reading the fields of pod JSON the kubelet API needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.kubelet.provider import JsonObject


def node_name(pod: JsonObject) -> str:
    name = pod.get("spec", {}).get("nodeName", "")
    return name if isinstance(name, str) else ""


def container_names(pod: JsonObject) -> set[str]:
    spec = pod.get("spec", {})
    names: set[str] = set()
    for key in ("containers", "initContainers", "ephemeralContainers"):
        containers: Sequence[Any] = spec.get(key) or ()
        names.update(c.get("name", "") for c in containers if isinstance(c, dict))
    return names
