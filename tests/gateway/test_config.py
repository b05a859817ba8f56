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
heartbeat_interval = 0.2
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
    assert cfg.link == {"heartbeat_interval": 0.2}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[kubelet]\nport = 'abc'", "kubelet.port: expected an integer from 0 to 65535"),
        ("[kubelet]\nport = 70000", "kubelet.port: expected an integer from 0 to 65535"),
        ("[nodes]\ncapacity = { pods = 'lots' }", "nodes.capacity.pods: expected a Kubernetes"),
        ("[nodes]\ncapacity = { gpus = '1' }", "expected one of cpu, memory, pods"),
        ("[nodes]\ntaint = 'nope'", "nodes.taint: expected KEY[=VALUE]:EFFECT"),
        ("[nodes]\nname_prefix = 'Caps_'", "nodes.name_prefix: expected lower-case"),
        ("[nodes]\nname_prefix = 'a..'", "nodes.name_prefix: expected lower-case"),
        (f"[nodes]\nname_prefix = '{'a' * 31}'", "at most 30 characters"),
        ("[nodes]\nlabels = { 'a b' = 'x' }", "nodes.labels.a b: expected a label key"),
        ("[nodes]\nlabels = { 'lab' = 'bench 3' }", "nodes.labels.lab: expected a label value"),
        (f"[nodes]\nlabels = {{ 'lab' = '{'x' * 64}' }}", "nodes.labels.lab: expected a label"),
        ("[gateway]\nstate_dir = ''", "gateway.state_dir: expected a non-empty string"),
        ("[gateway]\nowner = 'me'", "unknown key 'owner' in [gateway]"),
        ("[devices]\ndtr = 'maybe'", "devices.dtr: expected 'on', 'off' or 'keep'"),
        ("[devices]\nports = '/dev/ttyACM0'", "devices.ports: expected a list"),
        ("[kubelet]\nnode_ip = 'here'", "kubelet.node_ip: expected an IP address"),
        ("[kubelet]\ntls_cert = '/c.pem'", "kubelet.tls_cert and kubelet.tls_key go together"),
        ("[kube]\nqsp = 3", "unknown key 'qsp' in [kube]"),
        ("colour = 'blue'", "unknown key 'colour' in top level"),
        ("[nodes]\nlease_renew_interval_s = 50", "must be shorter than nodes.lease_duration_s"),
        ("[nodes", "not valid TOML"),
        ("[kube]\nqps = nan", "kube.qps: expected a finite number >= 0.1, got nan"),
        ("[nodes]\nremove_after_s = inf", "nodes.remove_after_s: expected a finite number"),
        ("[kubelet]\nexec_timeout_s = nan", "kubelet.exec_timeout_s: expected a finite number"),
        ("[ssh]\npoll_interval_s = -inf", "ssh.poll_interval_s: expected a finite number"),
        (
            "[nodes]\nmemory_pressure_percent = 150",
            "memory_pressure_percent: expected a share of memory from 0 to 100",
        ),
        ("[nodes]\npressure_transition_s = -1", "nodes.pressure_transition_s: expected a finite"),
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
    assert node_name_for(cfg, "e6614c311b7a4f2d") == "wirelet-e6614c311b7a4f2d"
    # Cleaned ids keep a readable part and get a hash of the original (see test_names.py).
    assert node_name_for(cfg, "Pico_ABC:01").startswith("wirelet-pico-abc-01-")
    assert node_name_for(GatewayConfig().nodes.__class__(name_prefix=""), "___") != ""


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
    for bad in ("hold_output", "heartbeat", "release_timeout", "features", "line_rate"):
        with pytest.raises(ConfigError, match=f"link.{bad}: unknown timer"):
            timers_from_config({bad: 1.0})


def test_gateway_accepts_frames_of_1_kb_by_default() -> None:
    """A device declaring frames of 1 KB or more may send 1 KB frames: the gateway's declared
    max_frame does not cap them at the protocol's small-device default (512)."""
    from gateway.app import timers_from_config

    session, _, _ = timers_from_config({})
    assert session.link.max_frame == 1024
    session, _, _ = timers_from_config({"max_frame": 2048})
    assert session.link.max_frame == 2048


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("window = 2.5", "link.window: expected an integer from 1 to 64, got 2.5"),
        ("window = 0", "link.window: expected an integer from 1 to 64, got 0"),
        ("window = 65", "link.window: expected an integer from 1 to 64, got 65"),
        ("max_frame = 64", "link.max_frame: expected an integer from 192 to 4096, got 64"),
        ("max_frame = 5000", "link.max_frame: expected an integer from 192 to 4096"),
        ("max_queue = 0", "link.max_queue: expected an integer from 1"),
        ("heartbeat_interval = 0", "link.heartbeat_interval: expected a number of seconds > 0"),
        ("rto_min = 0.0", "link.rto_min: expected a number of seconds > 0"),
        ("request_timeout = -1", "link.request_timeout: expected a number of seconds > 0"),
        ("config_retry_s = 'soon'", "link.config_retry_s: expected a number of seconds > 0"),
        ("stop_slack = -1", "link.stop_slack: expected a number of seconds from 0"),
        ("heartbeat_interval = nan", "link.heartbeat_interval: expected a number of seconds > 0"),
        ("stop_slack = nan", "link.stop_slack: expected a number of seconds from 0"),
        ("heartbeat_interval = true", "link.heartbeat_interval: expected a number of seconds"),
        ("heartbeat_intervall = 1", "link.heartbeat_intervall: unknown key; known:"),
        ("link_lost_timeout = 2", "link.heartbeat_interval (5) must be smaller than"),
        ("rto_min = 2\nrto_max = 1", "link.rto_min (2) must be smaller than link.rto_max (1)"),
        ("reconnect_initial_s = 9\nreconnect_max_s = 1", "link.reconnect_initial_s (9) must be"),
    ],
)
def test_link_mistakes_are_found_when_the_file_is_read(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, f"[link]\n{text}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(str(path))
    assert fragment in str(exc.value)


def test_link_values_keep_their_kind(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[link]\nwindow = 8\nmax_frame = 256\nstop_slack = 0\n"))
    assert cfg.link == {"window": 8, "max_frame": 256, "stop_slack": 0.0}
    assert isinstance(cfg.link["window"], int)


def test_link_keys_are_exactly_what_the_gateway_splits() -> None:
    """A timer added to the protocol or the session must be added to LINK_KEYS (and docs)."""
    import dataclasses

    from firmware_protocol import LinkConfig
    from firmware_protocol.constants import MAX_FRAME_CEILING, MAX_WINDOW, MIN_FRAME
    from gateway.app import _RECONNECT_KEYS, _RUNTIME_KEYS
    from gateway.config import LINK_KEYS
    from gateway.link.session import SessionConfig

    not_timers = {"versions", "features", "line_rate"}
    link_fields = {f.name for f in dataclasses.fields(LinkConfig)} - not_timers
    session_fields = {f.name for f in dataclasses.fields(SessionConfig)} - {
        "backoff",
        "link",
        "hold_output",
    }
    expected = link_fields | session_fields | set(_RUNTIME_KEYS) | set(_RECONNECT_KEYS)
    assert set(LINK_KEYS) == expected | {"config_retry_s"}
    assert (LINK_KEYS["max_frame"].minimum, LINK_KEYS["max_frame"].maximum) == (
        MIN_FRAME,
        MAX_FRAME_CEILING,
    )
    assert LINK_KEYS["window"].maximum == MAX_WINDOW


def test_flag_overrides_get_the_file_checks_and_name_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "[kubelet]\nport = 10250\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"kubelet": {"port": 99999}}, {"kubelet.port": "--kubelet-port"})
    assert str(exc.value) == (
        "--kubelet-port (kubelet.port): expected an integer from 0 to 65535, got 99999"
    )
    cfg = load_config(path, {"kubelet": {"port": 0, "address": None}}, {})
    assert cfg.kubelet.port == 0
    assert cfg.kubelet.address == "0.0.0.0"


def test_shipped_example_config_loads() -> None:
    """udev/README.md installs examples/wirelet.toml; it must stay valid."""
    example = Path(__file__).parents[2] / "examples" / "wirelet.toml"
    cfg = load_config(example)
    assert cfg.devices.udev
    assert cfg.gateway.state_dir == "/var/lib/wirelet"


def test_a_bad_file_value_is_an_error_even_when_a_flag_replaces_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[devices]\ndirs = "/x"\n')
    with pytest.raises(ConfigError, match=r"devices\.dirs") as info:
        load_config(path, {"devices": {"dirs": ["/y"]}}, {"devices.dirs": "--dir"})
    assert str(path) in str(info.value)
