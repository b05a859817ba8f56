"""The [kubelet] settings of this area: validated with a message that names the key."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import KubeletApiConfig, config_from_mapping, parse_port_range
from gateway.errors import ConfigError
from gateway.kubelet_serving import serving_context
from gateway.serving_cert import self_signed


def test_port_ranges() -> None:
    assert parse_port_range("10251-12250") == (10251, 12250)
    assert parse_port_range("10251") == (10251, 10251)
    assert parse_port_range("0") == (0, 0)


@pytest.mark.parametrize(
    ("kubelet", "message"),
    [
        ({"node_ports": "12250-10251"}, "kubelet.node_ports: ports must be within 1-65535"),
        ({"node_ports": "70000"}, "kubelet.node_ports: ports must be within 1-65535"),
        ({"node_ports": "a-b"}, "kubelet.node_ports: expected FIRST-LAST ports"),
        ({"exec_timeout_s": 0}, "kubelet.exec_timeout_s: must be > 0"),
        ({"idle_timeout_s": -1}, "kubelet.idle_timeout_s"),
        ({"max_connections": 0}, "kubelet.max_connections"),
        (
            {"server_tls_bootstrap": True, "tls_cert": "a.crt", "tls_key": "a.key"},
            "kubelet.server_tls_bootstrap and kubelet.tls_cert exclude each other",
        ),
    ],
)
def test_bad_kubelet_settings_name_the_key(kubelet: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({"kubelet": kubelet}, "test.toml")


def test_defaults() -> None:
    kubelet = config_from_mapping({}, "test.toml").kubelet
    assert kubelet.node_ports == "10251-12250"
    assert (kubelet.exec_timeout_s, kubelet.idle_timeout_s) == (30.0, 30.0)
    assert not kubelet.server_tls_bootstrap


async def test_a_gateway_without_a_client_ca_says_the_api_servers_calls_will_get_401(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Without it every `kubectl logs` through the API server was a bare 401 with nothing in
    # the gateway's log to say why.
    cert, key = self_signed(tmp_path, "127.0.0.1")
    ca_less = KubeletApiConfig(tls_cert=str(cert), tls_key=str(key))
    with caplog.at_level(logging.WARNING, "gateway.kubelet_serving"):
        await serving_context(ca_less, None, tmp_path, tmp_path, "127.0.0.1")  # type: ignore[arg-type]
    assert "no kubelet.client_ca configured" in caplog.text
    caplog.clear()
    with_ca = replace(ca_less, client_ca=str(cert))
    with caplog.at_level(logging.WARNING, "gateway.kubelet_serving"):
        await serving_context(with_ca, None, tmp_path, tmp_path, "127.0.0.1")  # type: ignore[arg-type]
    assert "client_ca" not in caplog.text
