"""A container's environment and argv, resolved as the kubelet resolves them.

`env` values, `valueFrom` (ConfigMap and Secret keys, downward-API fields and resources), `envFrom`
with prefixes, and `$(VAR)` expansion in values, command and args. A missing mandatory reference is
a `ContainerConfigError` with the kubelet's wording; a missing optional one is a warning the caller
turns into an event.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """A referenced object or key is missing: the kubelet's CreateContainerConfigError.

    Not a WireletError: it describes the user's pod, not a gateway fault.
    """


class ObjectLookup(Protocol):
    """Reads ConfigMaps and Secrets; returns None when the object does not exist."""

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    async def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """Secret data as the API returns it: base64-encoded values."""
        ...


@dataclass
class ResolvedCommand:
    env: list[tuple[str, str]] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay as is."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2 : end]
                if name in env:
                    out.append(env[name])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _field_value(pod: Mapping[str, Any], path: str, host_ip: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": host_ip,  # the device shares the gateway host's address
        "status.podIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_PATH.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldPath {path!r} in a downward-API env reference")


def _resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = container.get("resources") or {}
    section = resources.get(kind) or {}
    return str(section.get(resource, "0"))


class _Resolver:
    def __init__(self, lookup: ObjectLookup, namespace: str) -> None:
        self.lookup = lookup
        self.namespace = namespace
        self.config_maps: dict[str, Mapping[str, str] | None] = {}
        self.secrets: dict[str, Mapping[str, str] | None] = {}

    async def config_map(self, name: str) -> Mapping[str, str] | None:
        if name not in self.config_maps:
            self.config_maps[name] = await self.lookup.config_map(self.namespace, name)
        return self.config_maps[name]

    async def secret(self, name: str) -> Mapping[str, str] | None:
        if name not in self.secrets:
            raw = await self.lookup.secret(self.namespace, name)
            self.secrets[name] = (
                None
                if raw is None
                else {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in raw.items()}
            )
        return self.secrets[name]


async def resolve_command(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: ObjectLookup,
    host_ip: str,
) -> ResolvedCommand:
    """Resolve env (envFrom first, then env, later entries winning) and expand command and args."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    resolver = _Resolver(lookup, namespace)
    result = ResolvedCommand()
    values: dict[str, str] = {}

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "configmap"
            data = await resolver.config_map(ref.get("name", ""))
        else:
            ref, kind = source.get("secretRef") or {}, "secret"
            data = await resolver.secret(ref.get("name", ""))
        if data is None:
            message = f'{kind} "{ref.get("name", "")}" not found'
            if ref.get("optional"):
                result.warnings.append(f"optional {message}; its keys are not set")
                continue
            raise ContainerConfigError(message)
        for key, value in data.items():
            values[prefix + key] = value

    for item in container.get("env") or []:
        name = item.get("name", "")
        if "valueFrom" not in item:
            values[name] = expand(str(item.get("value", "")), values)
            continue
        resolved = await _value_from(
            item["valueFrom"], pod, container, resolver, host_ip=host_ip, result=result
        )
        if resolved is not None:
            values[name] = resolved

    result.env = list(values.items())
    command: Sequence[str] = container.get("command") or []
    args: Sequence[str] = container.get("args") or []
    result.argv = [expand(str(part), values) for part in [*command, *args]]
    return result


async def _value_from(
    source: Mapping[str, Any],
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    resolver: _Resolver,
    *,
    host_ip: str,
    result: ResolvedCommand,
) -> str | None:
    if "fieldRef" in source:
        return _field_value(pod, str(source["fieldRef"].get("fieldPath", "")), host_ip)
    if "resourceFieldRef" in source:
        return _resource_value(container, source["resourceFieldRef"])
    if "configMapKeyRef" in source:
        ref, kind, title = source["configMapKeyRef"], "configmap", "ConfigMap"
        data = await resolver.config_map(ref.get("name", ""))
    elif "secretKeyRef" in source:
        ref, kind, title = source["secretKeyRef"], "secret", "Secret"
        data = await resolver.secret(ref.get("name", ""))
    else:
        raise ContainerConfigError(f"unsupported valueFrom source {sorted(source)}")
    name, key = ref.get("name", ""), ref.get("key", "")
    if data is None:
        message = f'{kind} "{name}" not found'
    elif key not in data:
        message = f"couldn't find key {key} in {title} {resolver.namespace}/{name}"
    else:
        return data[key]
    if ref.get("optional"):
        result.warnings.append(f"optional {message}; the variable is not set")
        return None
    raise ContainerConfigError(message)
