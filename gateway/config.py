"""Gateway configuration: a TOML file plus command-line overrides, validated in one place.

Every mistake is reported as one `ConfigError` that names the file, the key and the expected
form, so an operator can fix it without reading code.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firmware_protocol import MAX_FRAME_CEILING, MIN_FRAME
from gateway.config_ssh import SshConfig, parse_ssh
from gateway.errors import ConfigError
from gateway.names import is_label_key, is_label_value, is_node_name_prefix, node_name

# Quantities as the mock provider's capacity file writes them: "100", "1.5", "100Gi", "500m".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_TAINT = re.compile(r"^([^=:\s]+)(=([^:\s]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$")
CAPACITY_KEYS = ("cpu", "memory", "pods")
# Where the gateway keeps its identity and, briefly, credentials (see GatewaySection).
DEFAULT_STATE_DIR = "/var/lib/wirelet"


@dataclass(frozen=True)
class LinkKey:
    """One [link] key: an integer or a number of seconds, with its bounds."""

    integer: bool
    minimum: float
    maximum: float
    minimum_open: bool = False  # seconds: the minimum itself is not allowed (0 means "never")


_SECONDS = LinkKey(integer=False, minimum=0.0, maximum=86_400.0, minimum_open=True)
# Every [link] key: protocol (LinkConfig), session (SessionConfig), reconnect and container
# restart back-off, config retry. Checked when the file is read, not when a device appears.
LINK_KEYS: dict[str, LinkKey] = {
    "max_frame": LinkKey(integer=True, minimum=MIN_FRAME, maximum=MAX_FRAME_CEILING),
    "window": LinkKey(integer=True, minimum=1, maximum=64),  # the protocol's MAX_WINDOW
    "max_queue": LinkKey(integer=True, minimum=1, maximum=1_000_000),
    **dict.fromkeys(
        (
            "rto_initial",
            "rto_min",
            "rto_max",
            "heartbeat_interval",
            "link_lost_timeout",
            "hello_interval",
            "request_timeout",
            "handshake_timeout",
            "open_timeout",
            "reconnect_initial_s",
            "reconnect_max_s",
            "restart_backoff_initial_s",
            "restart_backoff_max_s",
            "restart_backoff_reset_s",
            "config_retry_s",
        ),
        _SECONDS,
    ),
    "stop_slack": LinkKey(integer=False, minimum=0.0, maximum=86_400.0),
}
# The gateway's heartbeat, announced to the device in WELCOME (the device follows it). 5 s
# pings with a 15 s silence limit still mark a hung device NotReady well inside the 40 s node
# lease; an unplug is seen at once by the tty itself. Faster heartbeats cost CPU at scale
# (1000 devices: 2 s pings were 1000 PING/PONG frames a second).
LINK_DEFAULTS: dict[str, float] = {"heartbeat_interval": 5.0, "link_lost_timeout": 15.0}
# Pairs that must be ordered (smaller, larger), with the protocol's defaults for a missing one.
_LINK_ORDER = (
    ("heartbeat_interval", "link_lost_timeout", True),
    ("rto_min", "rto_max", False),
    ("reconnect_initial_s", "reconnect_max_s", False),
    ("restart_backoff_initial_s", "restart_backoff_max_s", False),
)


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
    # MemoryPressure while the device reports less free memory than this share of its total,
    # and until none was seen for pressure_transition_s (the kubelet's 5 minutes). Off (0) by
    # default: what firmware counts as memory in use differs (heap only, or static data and
    # the whole stack), so the threshold is the operator's call for the devices at hand.
    memory_pressure_percent: float = 0.0
    pressure_transition_s: float = 300.0
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
    # Each node's own kubelet endpoint (see docs/kubelet-api.md): "FIRST-LAST", or "0" for a
    # free port chosen by the OS per node (tests, demos).
    node_ports: str = "10251-12250"
    exec_timeout_s: float = 30.0  # how long a `kubectl exec` command may run on a device
    # Output one `kubectl exec` passes on (stdout and stderr together); the rest is dropped and
    # kubectl is told on stderr. Bounds what a command that prints forever costs the gateway.
    exec_output_limit_bytes: int = 1024 * 1024
    idle_timeout_s: float = 30.0  # a connection must send a whole request header within this
    max_connections: int = 4096  # established connections over all kubelet API listeners
    # Serving certificate from the cluster (signer kubernetes.io/kubelet-serving) instead of
    # tls_cert/tls_key or a self-signed one; renewed before it expires.
    server_tls_bootstrap: bool = False
    # Approve that request itself (needs deploy/rbac.yaml's wirelet:gateway-serving-approver).
    serving_cert_approve: bool = False


@dataclass(frozen=True)
class LogConfig:
    dir: str = "/var/log/wirelet/pods"
    max_bytes: int = 10 * 1024 * 1024  # the kubelet's containerLogMaxSize default
    max_files: int = 5  # the kubelet's containerLogMaxFiles default


@dataclass(frozen=True)
class GatewaySection:
    # Persistent state: the gateway's id (node ownership survives a restart) and a private
    # (0700) folder for credentials while they are loaded; one state dir per gateway.
    state_dir: str = DEFAULT_STATE_DIR
    # Recorded as the owner of the nodes this gateway serves; None: hostname + persistent id.
    identity: str | None = None


@dataclass(frozen=True)
class GatewayConfig:
    kube: KubeConfig = field(default_factory=KubeConfig)
    nodes: NodeConfig = field(default_factory=NodeConfig)
    devices: DeviceSourceConfig = field(default_factory=DeviceSourceConfig)
    kubelet: KubeletApiConfig = field(default_factory=KubeletApiConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    # Protocol timers ([link] table), validated against LINK_KEYS; split up in gateway.app.
    link: Mapping[str, float] = field(default_factory=dict)
    gateway: GatewaySection = field(default_factory=GatewaySection)
    ssh: SshConfig = field(default_factory=SshConfig)  # SSH hosts as nodes (gateway.config_ssh)


class _Reader:
    """Reads typed values out of one TOML table, collecting the path for error messages."""

    def __init__(
        self,
        source: str,
        table: Mapping[str, Any],
        path: str,
        flags: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.path = path
        self.seen: set[str] = set()
        self.flags = flags or {}  # dotted key -> the command-line flag that set it

    def where(self, key: str) -> str:
        """`FILE: section.key`, or `--flag` when the value came from the command line."""
        dotted = f"{self.path}.{key}" if self.path else key
        flag = self.flags.get(dotted)
        return f"{flag} ({dotted})" if flag else f"{self.source}: {dotted}"

    def _fail(self, key: str, expected: str, got: object) -> ConfigError:
        return ConfigError(f"{self.where(key)}: expected {expected}, got {got!r}")

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
        # not (value >= minimum) also refuses nan, which compares false with everything.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not minimum <= value < math.inf
        ):
            raise self._fail(key, f"a finite number >= {minimum:g}", value)
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise self._fail(key, f"an integer from {minimum} to {maximum}", value)
        return value

    def link_value(self, key: str) -> float:
        value = self.get(key)
        spec = LINK_KEYS.get(key)
        if spec is None:
            raise ConfigError(
                f"{self.where(key)}: unknown key; known: {', '.join(sorted(LINK_KEYS))}"
            )
        low, high = f"{spec.minimum:g}", f"{spec.maximum:g}"
        if spec.integer:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._fail(key, f"an integer from {low} to {high}", value)
            expected = f"an integer from {low} to {high}"
        else:
            expected = (
                f"a number of seconds > {low} and <= {high}"
                if spec.minimum_open
                else f"a number of seconds from {low} to {high}"
            )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._fail(key, expected, value)
        too_low = value <= spec.minimum if spec.minimum_open else value < spec.minimum
        if too_low or value > spec.maximum or math.isnan(value):
            raise self._fail(key, expected, value)
        return float(value) if not spec.integer else int(value)

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
        return _Reader(self.source, value, f"{self.path}.{key}" if self.path else key, self.flags)

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


def config_from_mapping(  # noqa: PLR0912, PLR0915 (one check per section and key, in file order)
    data: Mapping[str, Any],
    source: str = "<config>",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    flags: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Validate a parsed TOML document into a GatewayConfig.

    `overrides` (command-line flags, TOML-shaped: {"kubelet": {"port": 1}}) replace the file's
    values before validation, so flags get the same checks; `flags` maps "kubelet.port" to
    "--kubelet-port" so an error names the flag the value came from.
    """
    merged: dict[str, Any] = dict(data)
    for section, values in (overrides or {}).items():
        table = merged.get(section)
        base = dict(table) if isinstance(table, dict) else {}
        base.update({k: v for k, v in values.items() if v is not None})
        merged[section] = base
    top = _Reader(source, merged, "", flags)

    kube_t = top.table_of("kube")
    kube = KubeConfig(
        kubeconfig=kube_t.string("kubeconfig", None),
        qps=kube_t.number("qps", KubeConfig.qps, minimum=0.1),
        burst=kube_t.integer("burst", KubeConfig.burst, minimum=1, maximum=100_000),
    )
    kube_t.reject_unknown()

    nodes_t = top.table_of("nodes")
    prefix_value = nodes_t.get("name_prefix")
    prefix = NodeConfig.name_prefix if prefix_value is None else prefix_value
    if not isinstance(prefix, str) or not is_node_name_prefix(prefix):
        raise nodes_t._fail(
            "name_prefix",
            "lower-case letters, digits, '-' or '.', starting with a letter or digit, "
            "at most 30 characters",
            prefix,
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
    for key, value in labels.items():
        if not is_label_key(key):
            raise labels_t._fail(key, "a label key ([prefix/]name, name <= 63 characters)", key)
        if not is_label_value(value):
            raise labels_t._fail(
                key, "a label value (<= 63 of A-Z a-z 0-9 . _ -, alphanumeric at both ends)", value
            )
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
        memory_pressure_percent=nodes_t.number(
            "memory_pressure_percent", NodeConfig.memory_pressure_percent
        ),
        pressure_transition_s=nodes_t.number(
            "pressure_transition_s", NodeConfig.pressure_transition_s
        ),
        labels=labels,
    )
    if nodes.memory_pressure_percent > 100:
        raise nodes_t._fail(
            "memory_pressure_percent",
            "a share of memory from 0 to 100",
            nodes.memory_pressure_percent,
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
        raise dev_t._fail("dtr", "'on', 'off' or 'keep'", dtr)
    devices = DeviceSourceConfig(
        ports=dev_t.strings("ports"),
        dirs=dev_t.strings("dirs"),
        udev=dev_t.boolean("udev", DeviceSourceConfig.udev),
        usb=_usb_selectors(dev_t.strings("usb"), dev_t.where("usb")),
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
            raise api_t._fail("node_ip", "an IP address", node_ip) from None
    kubelet = KubeletApiConfig(
        address=api_t.string("address", KubeletApiConfig.address) or KubeletApiConfig.address,
        port=api_t.integer("port", KubeletApiConfig.port, minimum=0, maximum=65535),
        node_ip=node_ip,
        tls_cert=api_t.string("tls_cert", None),
        tls_key=api_t.string("tls_key", None),
        client_ca=api_t.string("client_ca", None),
        node_ports=api_t.string("node_ports", KubeletApiConfig.node_ports)
        or KubeletApiConfig.node_ports,
        exec_timeout_s=_positive(api_t, "exec_timeout_s", KubeletApiConfig.exec_timeout_s),
        exec_output_limit_bytes=api_t.integer(
            "exec_output_limit_bytes",
            KubeletApiConfig.exec_output_limit_bytes,
            minimum=1,
            maximum=1 << 40,
        ),
        idle_timeout_s=_positive(api_t, "idle_timeout_s", KubeletApiConfig.idle_timeout_s),
        max_connections=api_t.integer(
            "max_connections", KubeletApiConfig.max_connections, minimum=1, maximum=1_000_000
        ),
        server_tls_bootstrap=api_t.boolean(
            "server_tls_bootstrap", KubeletApiConfig.server_tls_bootstrap
        ),
        serving_cert_approve=api_t.boolean(
            "serving_cert_approve", KubeletApiConfig.serving_cert_approve
        ),
    )
    try:
        parse_port_range(kubelet.node_ports)
    except ValueError as exc:
        raise ConfigError(f"{source}: kubelet.node_ports: {exc}") from None
    if kubelet.server_tls_bootstrap and kubelet.tls_cert is not None:
        raise ConfigError(
            f"{source}: kubelet.server_tls_bootstrap and kubelet.tls_cert exclude each other "
            "(the certificate comes from the cluster, or from files)"
        )
    if (kubelet.tls_cert is None) != (kubelet.tls_key is None):
        set_one = "tls_cert" if kubelet.tls_cert is not None else "tls_key"
        raise ConfigError(
            f"{api_t.where(set_one)}: kubelet.tls_cert and kubelet.tls_key go together "
            "(the serving certificate and its private key)"
        )
    api_t.reject_unknown()

    logs_t = top.table_of("logs")
    logs = LogConfig(
        dir=logs_t.string("dir", LogConfig.dir) or LogConfig.dir,
        max_bytes=logs_t.integer("max_bytes", LogConfig.max_bytes, minimum=4096, maximum=2**40),
        max_files=logs_t.integer("max_files", LogConfig.max_files, minimum=1, maximum=1000),
    )
    logs_t.reject_unknown()

    link_t = top.table_of("link")
    link = {key: link_t.link_value(key) for key in list(link_t.table)}
    for smaller, larger, gateway_default in _LINK_ORDER:
        defaults = LINK_DEFAULTS if gateway_default else {}
        low = link.get(smaller, defaults.get(smaller))
        high = link.get(larger, defaults.get(larger))
        given = smaller in link or larger in link
        if given and low is not None and high is not None and low >= high:
            raise ConfigError(
                f"{link_t.where(smaller)} ({low:g}) must be smaller than link.{larger} ({high:g})"
            )

    gateway_t = top.table_of("gateway")
    gateway = GatewaySection(
        state_dir=gateway_t.string("state_dir", GatewaySection.state_dir) or DEFAULT_STATE_DIR,
        identity=gateway_t.string("identity", None),
    )
    gateway_t.reject_unknown()

    ssh = parse_ssh(top.table_of("ssh"))

    top.reject_unknown()
    return GatewayConfig(kube, nodes, devices, kubelet, logs, link, gateway, ssh=ssh)


def parse_port_range(text: str) -> tuple[int, int]:
    """`"10251-12250"`, one port `"10251"`, or `"0"` (the OS picks a free port per node)."""
    first_text, _, last_text = text.strip().partition("-")
    try:
        first = int(first_text)
        last = int(last_text) if last_text else first
    except ValueError:
        raise ValueError(f"expected FIRST-LAST ports, e.g. 10251-12250, got {text!r}") from None
    if first == last == 0:
        return 0, 0
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"ports must be within 1-65535 with FIRST <= LAST, got {text!r}")
    return first, last


def _positive(table: _Reader, key: str, default: float) -> float:
    value = table.number(key, default)
    if value <= 0:
        raise ConfigError(f"{table.where(key)}: must be > 0 seconds, got {value}")
    return value


def load_config(
    path: str | Path | None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    flags: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Read and validate a TOML config file (None: the defaults), with command-line
    `overrides` checked exactly as file values are (see config_from_mapping)."""
    if path is None:
        return config_from_mapping({}, "<defaults>", overrides, flags)
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
    if overrides:
        # The file on its own first: a wrong value in it is an error even when a flag replaces
        # it this time (the next run without the flag would meet it).
        config_from_mapping(data, source)
    return config_from_mapping(data, source, overrides, flags)


def node_name_for(config: NodeConfig, device_id: str) -> str:
    """Node name from the device's own identity, never from the tty, so it survives re-plugging
    (always valid, distinct for distinct ids: see gateway.names)."""
    try:
        return node_name(config.name_prefix, device_id)
    except ValueError as exc:
        raise ConfigError(f"nodes.name_prefix: {exc}") from None


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
    device_dir: str,
    log_dir: str,
    tls_cert: str = "",
    tls_key: str = "",
    state_dir: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The config, as TOML-shaped data, of a gateway beside a control plane on this machine
    (the demo, tests, benchmarks): kubelet API on 127.0.0.1 with a free port, devices from one
    directory of links, state beside the logs unless given; without a serving certificate
    (tls_cert, tls_key) the gateway makes or requests its own."""
    serving = {"tls_cert": tls_cert, "tls_key": tls_key} if tls_cert and tls_key else {}
    return {
        "gateway": {"state_dir": state_dir or str(Path(log_dir).parent / "state")},
        "kube": {"kubeconfig": kubeconfig},
        "devices": {"dirs": [device_dir]},
        "kubelet": {
            "address": "127.0.0.1",
            "port": 0,
            "node_ports": "0",
            "node_ip": "127.0.0.1",
            **serving,
            "client_ca": client_ca,
        },
        "logs": {"dir": log_dir},
    }
