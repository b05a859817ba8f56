"""Config parsing: good files load, every kind of mistake names its key and expected form."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import (
    GatewayConfig,
    Taint,
    load_config,
    node_name_for,
    parse_taint,
    with_overrides,
)
from gateway.errors import ConfigError

GOOD = """
[kube]
kubeconfig = "/tmp/kc"
qps = 20

[nodes]
name_prefix = "lab-"
taint = "example.com/board=yes:NoExecute"
capacity = { cpu = "2", memory = "256Ki", pods = 4 }
lease_renew_interval_s = 0.5

[nodes.capacity_per_device."pico-1"]
pods = "1"

[devices]
dirs = ["/dev/wirelet"]
ports = ["/dev/ttyACM0"]
dtr = "off"

[kubelet]
port = 0
node_ip = "127.0.0.1"

[logs]
dir = "/tmp/logs"
max_files = 2

[link]
heartbeat_interval_s = 0.2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wirelet.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    cfg = load_config(None)
    assert cfg == GatewayConfig()
    assert str(cfg.nodes.taint) == "virtual-kubelet.io/provider=wirelet:NoSchedule"
    assert cfg.nodes.lease_duration_s == 40


def test_full_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.kube.kubeconfig == "/tmp/kc"
    assert cfg.nodes.taint == Taint("example.com/board", "yes", "NoExecute")
    assert cfg.nodes.capacity_for("pico-1") == {"cpu": "2", "memory": "256Ki", "pods": "1"}
    assert cfg.nodes.capacity_for("other") == {"cpu": "2", "memory": "256Ki", "pods": "4"}
    assert cfg.devices.dirs == ("/dev/wirelet",)
    assert cfg.devices.dtr == "off"
    assert cfg.kubelet.port == 0
    assert cfg.logs.max_files == 2
    assert cfg.link == {"heartbeat_interval_s": 0.2}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[kubelet]\nport = 'abc'", "kubelet.port: expected an integer from 0 to 65535"),
        ("[kubelet]\nport = 70000", "kubelet.port: expected an integer from 0 to 65535"),
        ("[nodes]\ncapacity = { pods = 'lots' }", "nodes.capacity.pods: expected a Kubernetes"),
        ("[nodes]\ncapacity = { gpus = '1' }", "expected one of cpu, memory, pods"),
        ("[nodes]\ntaint = 'nope'", "nodes.taint: expected KEY[=VALUE]:EFFECT"),
        ("[nodes]\nname_prefix = 'Caps_'", "nodes.name_prefix: expected lower-case"),
        ("[devices]\ndtr = 'maybe'", "devices.dtr: expected 'on', 'off' or 'keep'"),
        ("[devices]\nports = '/dev/ttyACM0'", "devices.ports: expected a list"),
        ("[kubelet]\nnode_ip = 'here'", "kubelet.node_ip: expected an IP address"),
        ("[kubelet]\ntls_cert = '/c.pem'", "kubelet.tls_cert and kubelet.tls_key go together"),
        ("[kube]\nqsp = 3", "unknown key 'qsp' in [kube]"),
        ("colour = 'blue'", "unknown key 'colour' in top level"),
        ("[nodes]\nlease_renew_interval_s = 50", "must be shorter than nodes.lease_duration_s"),
        ("[nodes", "not valid TOML"),
    ],
)
def test_mistakes_name_key_and_expected_form(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert message.startswith(str(path))
    assert fragment in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def test_empty_taint_removes_it(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "[nodes]\ntaint = ''")).nodes.taint is None


def test_parse_taint_without_value() -> None:
    assert parse_taint("dedicated:NoSchedule") == Taint("dedicated", "", "NoSchedule")
    assert str(Taint("dedicated", "", "NoSchedule")) == "dedicated:NoSchedule"


def test_node_name_comes_from_device_identity() -> None:
    cfg = GatewayConfig().nodes
    assert node_name_for(cfg, "E6614C311B7A4F2D") == "wirelet-e6614c311b7a4f2d"
    assert node_name_for(cfg, "Pico_ABC:01") == "wirelet-pico-abc-01"
    with pytest.raises(ConfigError, match="gives no valid node name"):
        node_name_for(GatewayConfig().nodes.__class__(name_prefix=""), "___")


def test_overrides_replace_only_given_values(tmp_path: Path) -> None:
    cfg = with_overrides(
        load_config(write(tmp_path, GOOD)), kubelet={"port": 1234, "address": None}
    )
    assert cfg.kubelet.port == 1234
    assert cfg.kubelet.node_ip == "127.0.0.1"


def test_link_timers_split_and_unknown_timer_is_an_error() -> None:
    from gateway.app import timers_from_config

    session, restart, retry = timers_from_config(
        {"heartbeat_interval": 1.0, "stop_slack": 9.0, "restart_backoff_initial_s": 2.0}
    )
    assert session.link.heartbeat_interval == 1.0
    assert session.link.link_lost_timeout == 15.0  # the gateway's default, not the protocol's
    assert session.stop_slack == 9.0
    assert session.hold_output
    assert restart.initial_s == 2.0
    assert retry == 5.0
    for bad in ("hold_output", "heartbeat", "release_timeout"):
        with pytest.raises(ConfigError, match=f"link.{bad}: unknown timer"):
            timers_from_config({bad: 1.0})


def test_gateway_accepts_the_largest_frames_by_default() -> None:
    """A device declaring frames of 1 KB or more may send them: the gateway's declared
    max_frame does not cap them at the protocol's small-device default."""
    from firmware_protocol.constants import MAX_FRAME_CEILING
    from gateway.app import timers_from_config

    session, _, _ = timers_from_config({})
    assert session.link.max_frame == MAX_FRAME_CEILING
    session, _, _ = timers_from_config({"max_frame": 1024})
    assert session.link.max_frame == 1024
