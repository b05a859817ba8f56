"""Gateway configuration: a TOML file plus command-line overrides, validated in one place.

Every mistake is reported as one `ConfigError` that names the file, the key and the expected
form, so an operator can fix it without reading code.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.config_ssh import SshConfig, parse_ssh
from gateway.errors import ConfigError

# Quantities as the mock provider's capacity file writes them: "100", "1.5", "100Gi", "500m".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_TAINT = re.compile(r"^([^=:\s]+)(=([^:\s]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$")
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CAPACITY_KEYS = ("cpu", "memory", "pods")


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return (
            f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"
        )


@dataclass(frozen=True)
class KubeConfig:
    kubeconfig: str | None = (
        None  # None: $KUBECONFIG or ~/.kube/config; "in-cluster": service account
    )
    qps: float = 50.0  # API requests per second the gateway allows itself (client-side limiter)
    burst: int = 100  # requests that may go at once before the limiter applies


@dataclass(frozen=True)
class NodeConfig:
    name_prefix: str = "wirelet-"
    taint: Taint | None = Taint("virtual-kubelet.io/provider", "wirelet", "NoSchedule")
    # Mock-provider-shaped overrides: {"cpu": "1", "memory": "256Ki", "pods": "4"}.
    capacity: Mapping[str, str] = field(default_factory=dict)
    capacity_per_device: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    lease_duration_s: int = 40  # the kubelet's default nodeLeaseDurationSeconds
    lease_renew_interval_s: float = 10.0  # the kubelet renews at a quarter of the duration
    # Unchanged node status is re-posted this often; changes go at once. The kubelet's
    # nodeStatusReportFrequency default: the Lease, not the status, is the heartbeat.
    status_interval_s: float = 300.0
    remove_after_s: float = 0.0  # remove a node whose device is gone this long; 0 keeps it NotReady
    labels: Mapping[str, str] = field(default_factory=dict)

    def capacity_for(self, device_id: str) -> dict[str, str]:
        merged = dict(self.capacity)
        merged.update(self.capacity_per_device.get(device_id, {}))
        return merged


@dataclass(frozen=True)
class DeviceSourceConfig:
    ports: tuple[str, ...] = ()  # explicit tty paths
    dirs: tuple[str, ...] = ()  # directories of links such as /dev/wirelet or /dev/serial/by-id
    udev: bool = False  # watch udev for devices tagged by udev/60-wirelet.rules
    usb: tuple[str, ...] = ()  # raw USB selectors: "cafe:4001", "serial=X", "1-1.2" (docs/usb.md)
    baudrate: int = 115200
    dtr: str = "keep"  # "on", "off" or "keep": some boards reset when DTR toggles


def _usb_selectors(selectors: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Raw USB selectors, each checked for its form now (a typo is an error at start)."""
    from gateway.devices.sources.usb import UsbSelector

    for text in selectors:
        UsbSelector.parse(text, where)
    return selectors


@dataclass(frozen=True)
class KubeletApiConfig:
    address: str = "0.0.0.0"
    port: int = 10250
    node_ip: str | None = None  # address advertised in node status; None picks the host's
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None


@dataclass(frozen=True)
class LogConfig:
    dir: str = "/var/log/wirelet/pods"
    max_bytes: int = 10 * 1024 * 1024  # the kubelet's containerLogMaxSize default
    max_files: int = 5  # the kubelet's containerLogMaxFiles default


@dataclass(frozen=True)
class GatewayConfig:
    kube: KubeConfig = field(default_factory=KubeConfig)
    nodes: NodeConfig = field(default_factory=NodeConfig)
    devices: DeviceSourceConfig = field(default_factory=DeviceSourceConfig)
    kubelet: KubeletApiConfig = field(default_factory=KubeletApiConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    # Protocol timers ([link] table) are passed through to the link layer as given.
    link: Mapping[str, float] = field(default_factory=dict)
    ssh: SshConfig = field(default_factory=SshConfig)  # SSH hosts as nodes (gateway.config_ssh)


class _Reader:
    """Reads typed values out of one TOML table, collecting the path for error messages."""

    def __init__(self, source: str, table: Mapping[str, Any], path: str) -> None:
        self.source = source
        self.table = table
        self.path = path
        self.seen: set[str] = set()

    def _fail(self, key: str, expected: str, got: object) -> ConfigError:
        where = f"{self.path}.{key}" if self.path else key
        return ConfigError(f"{self.source}: {where}: expected {expected}, got {got!r}")

    def get(self, key: str) -> Any:
        self.seen.add(key)
        return self.table.get(key)

    def string(self, key: str, default: str | None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string", value)
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self._fail(key, f"a number >= {minimum:g}", value)
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise self._fail(key, f"an integer from {minimum} to {maximum}", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._fail(key, "a list of non-empty strings", value)
        return tuple(value)

    def table_of(self, key: str) -> _Reader:
        value = self.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value)
        return _Reader(self.source, value, f"{self.path}.{key}" if self.path else key)

    def capacity(self, key: str) -> dict[str, str]:
        sub = self.table_of(key)
        result: dict[str, str] = {}
        for name, raw in sub.table.items():
            if name not in CAPACITY_KEYS:
                raise sub._fail(name, f"one of {', '.join(CAPACITY_KEYS)}", name)
            text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            if not isinstance(text, str) or not _QUANTITY.match(text):
                raise sub._fail(name, 'a Kubernetes quantity such as "4", "500m" or "256Ki"', raw)
            result[name] = text
        return result

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            where = f"[{self.path}]" if self.path else "top level"
            raise ConfigError(
                f"{self.source}: unknown key {unknown[0]!r} in {where}; "
                f"known keys: {', '.join(sorted(self.seen))}"
            )


def parse_taint(text: str, source: str = "nodes.taint") -> Taint:
    match = _TAINT.match(text)
    if not match:
        raise ConfigError(
            f"{source}: expected KEY[=VALUE]:EFFECT with EFFECT one of NoSchedule, "
            f"PreferNoSchedule, NoExecute, got {text!r}"
        )
    return Taint(match.group(1), match.group(3) or "", match.group(4))


def config_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> GatewayConfig:
    """Validate a parsed TOML document into a GatewayConfig."""
    top = _Reader(source, data, "")

    kube_t = top.table_of("kube")
    kube = KubeConfig(
        kubeconfig=kube_t.string("kubeconfig", None),
        qps=kube_t.number("qps", KubeConfig.qps, minimum=0.1),
        burst=kube_t.integer("burst", KubeConfig.burst, minimum=1, maximum=100_000),
    )
    kube_t.reject_unknown()

    nodes_t = top.table_of("nodes")
    prefix = nodes_t.string("name_prefix", NodeConfig.name_prefix) or ""
    if prefix and not re.match(r"^[a-z0-9]([-a-z0-9.]*)$", prefix):
        raise ConfigError(
            f"{source}: nodes.name_prefix: expected lower-case letters, digits, '-' or '.', "
            f"starting with a letter or digit, got {prefix!r}"
        )
    taint_value = nodes_t.get("taint")
    taint: Taint | None
    if taint_value is None:
        taint = NodeConfig.taint
    elif taint_value == "":
        taint = None  # an empty string removes the taint
    elif isinstance(taint_value, str):
        taint = parse_taint(taint_value, f"{source}: nodes.taint")
    else:
        raise ConfigError(f"{source}: nodes.taint: expected a string, got {taint_value!r}")
    per_device_t = nodes_t.table_of("capacity_per_device")
    per_device = {dev: per_device_t.capacity(dev) for dev in list(per_device_t.table)}
    labels_t = nodes_t.table_of("labels")
    labels = {k: v for k, v in labels_t.table.items() if isinstance(v, str)}
    if len(labels) != len(labels_t.table):
        raise ConfigError(f"{source}: nodes.labels: expected string values only")
    lease_duration = nodes_t.integer(
        "lease_duration_s", NodeConfig.lease_duration_s, minimum=1, maximum=3600
    )
    nodes = NodeConfig(
        name_prefix=prefix,
        taint=taint,
        capacity=nodes_t.capacity("capacity"),
        capacity_per_device=per_device,
        lease_duration_s=lease_duration,
        lease_renew_interval_s=nodes_t.number(
            "lease_renew_interval_s", NodeConfig.lease_renew_interval_s, minimum=0.05
        ),
        status_interval_s=nodes_t.number(
            "status_interval_s", NodeConfig.status_interval_s, minimum=0.05
        ),
        remove_after_s=nodes_t.number("remove_after_s", NodeConfig.remove_after_s),
        labels=labels,
    )
    if nodes.lease_renew_interval_s >= nodes.lease_duration_s:
        raise ConfigError(
            f"{source}: nodes.lease_renew_interval_s ({nodes.lease_renew_interval_s:g}) must be "
            f"shorter than nodes.lease_duration_s ({nodes.lease_duration_s})"
        )
    nodes_t.reject_unknown()

    dev_t = top.table_of("devices")
    dtr = dev_t.string("dtr", DeviceSourceConfig.dtr)
    if dtr not in ("on", "off", "keep"):
        raise ConfigError(f"{source}: devices.dtr: expected 'on', 'off' or 'keep', got {dtr!r}")
    devices = DeviceSourceConfig(
        ports=dev_t.strings("ports"),
        dirs=dev_t.strings("dirs"),
        udev=dev_t.boolean("udev", DeviceSourceConfig.udev),
        usb=_usb_selectors(dev_t.strings("usb"), f"{source}: devices.usb"),
        baudrate=dev_t.integer(
            "baudrate", DeviceSourceConfig.baudrate, minimum=50, maximum=20_000_000
        ),
        dtr=dtr,
    )
    dev_t.reject_unknown()

    api_t = top.table_of("kubelet")
    node_ip = api_t.string("node_ip", None)
    if node_ip is not None:
        try:
            ipaddress.ip_address(node_ip)
        except ValueError:
            raise ConfigError(
                f"{source}: kubelet.node_ip: expected an IP address, got {node_ip!r}"
            ) from None
    kubelet = KubeletApiConfig(
        address=api_t.string("address", KubeletApiConfig.address) or KubeletApiConfig.address,
        port=api_t.integer("port", KubeletApiConfig.port, minimum=0, maximum=65535),
        node_ip=node_ip,
        tls_cert=api_t.string("tls_cert", None),
        tls_key=api_t.string("tls_key", None),
        client_ca=api_t.string("client_ca", None),
    )
    if (kubelet.tls_cert is None) != (kubelet.tls_key is None):
        raise ConfigError(f"{source}: kubelet.tls_cert and kubelet.tls_key go together")
    api_t.reject_unknown()

    logs_t = top.table_of("logs")
    logs = LogConfig(
        dir=logs_t.string("dir", LogConfig.dir) or LogConfig.dir,
        max_bytes=logs_t.integer("max_bytes", LogConfig.max_bytes, minimum=4096, maximum=2**40),
        max_files=logs_t.integer("max_files", LogConfig.max_files, minimum=1, maximum=1000),
    )
    logs_t.reject_unknown()

    link_t = top.table_of("link")
    link = {key: link_t.number(key, 0.0) for key in list(link_t.table)}

    ssh = parse_ssh(top.table_of("ssh"))

    top.reject_unknown()
    return GatewayConfig(kube, nodes, devices, kubelet, logs, link, ssh)


def load_config(path: str | Path | None) -> GatewayConfig:
    """Read and validate a TOML config file; None gives the defaults."""
    if path is None:
        return GatewayConfig()
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return config_from_mapping(data, source)


def node_name_for(config: NodeConfig, device_id: str) -> str:
    """Node name from the device's own identity, never from the tty, so it survives re-plugging."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", device_id.lower()).strip("-.")
    name = f"{config.name_prefix}{slug}"[:253].rstrip("-.")
    if not _NODE_NAME.match(name):
        raise ConfigError(f"device id {device_id!r} gives no valid node name (got {name!r})")
    return name


def with_overrides(config: GatewayConfig, **sections: Any) -> GatewayConfig:
    """Apply command-line flags on top of the file: `with_overrides(cfg, kubelet={"port": 0})`."""
    updated = config
    for name, values in sections.items():
        current = getattr(updated, name)
        clean = {k: v for k, v in values.items() if v is not None}
        if clean:
            updated = replace(updated, **{name: replace(current, **clean)})
    return updated


def loopback_settings(
    *,
    kubeconfig: str,
    client_ca: str,
    tls_cert: str,
    tls_key: str,
    device_dir: str,
    log_dir: str,
) -> dict[str, dict[str, Any]]:
    """The config, as TOML-shaped data, of a gateway beside a control plane on this machine
    (the demo, tests, benchmarks): kubelet API on 127.0.0.1 with a free port, devices from one
    directory of links."""
    return {
        "kube": {"kubeconfig": kubeconfig},
        "devices": {"dirs": [device_dir]},
        "kubelet": {
            "address": "127.0.0.1",
            "port": 0,
            "node_ip": "127.0.0.1",
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "client_ca": client_ca,
        },
        "logs": {"dir": log_dir},
    }
