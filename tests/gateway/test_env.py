"""Env and argv resolution matches the kubelet: references, optional/mandatory, expansion."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.kube.env import ContainerConfigError, expand, resolve_command


class Objects:
    """In-memory ConfigMaps and Secrets: the resolution rules, not the API, are under test."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {"cfg": {"GREETING": "hi", "level": "3"}}
        self.secrets: dict[str, dict[str, str]] = {
            "creds": {"token": base64.b64encode(b"s3cret").decode()}
        }

    async def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.maps.get(name)

    async def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(name)


POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "demo"}},
    "spec": {"nodeName": "wirelet-dev1", "serviceAccountName": "default"},
}


def test_expand_rules() -> None:
    env = {"A": "1"}
    assert expand("x$(A)y", env) == "x1y"
    assert expand("$(B)", env) == "$(B)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(A", env) == "$(A"


async def test_full_resolution() -> None:
    container = {
        "name": "c",
        "command": ["counter"],
        "args": ["$(LEVEL)", "$(MISSING)"],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "MSG", "value": "level=$(LEVEL)"},
        ],
    }
    result = await resolve_command(POD, container, Objects(), "10.0.0.5")
    env = dict(result.env)
    assert env["CFG_GREETING"] == "hi"
    assert env["LEVEL"] == "3"
    assert env["TOKEN"] == "s3cret"
    assert env["POD"] == "p"
    assert env["APP"] == "demo"
    assert env["NODE"] == "wirelet-dev1"
    assert env["IP"] == "10.0.0.5"
    assert env["MSG"] == "level=3"
    assert result.argv == ["counter", "3", "$(MISSING)"]
    assert result.warnings == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
            'secret "absent" not found',
        ),
        (
            [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}],
            "couldn't find key nope in ConfigMap ns/cfg",
        ),
    ],
)
async def test_missing_mandatory_reference_is_a_config_error(
    env: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        await resolve_command(POD, {"name": "c", "env": env}, Objects(), "h")


async def test_missing_optional_reference_warns_and_skips() -> None:
    container = {
        "name": "c",
        "env": [
            {
                "name": "X",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            }
        ],
        "envFrom": [{"configMapRef": {"name": "gone", "optional": True}}],
    }
    result = await resolve_command(POD, container, Objects(), "h")
    assert result.env == []
    assert len(result.warnings) == 2
    assert 'configmap "gone" not found' in result.warnings[0]


async def test_mandatory_envfrom_missing() -> None:
    container = {"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]}
    with pytest.raises(ContainerConfigError, match='secret "nope" not found'):
        await resolve_command(POD, container, Objects(), "h")
