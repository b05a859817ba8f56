"""The [kubelet] settings of this area: validated with a message that names the key."""

from __future__ import annotations

import pytest

from gateway.config import config_from_mapping, parse_port_range
from gateway.errors import ConfigError


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
