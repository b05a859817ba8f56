"""The gateway process: wires devices, runtime, Kubernetes side and kubelet API together.

Start order: API clients, event recorder, pod controller, kubelet API, pod informer, background
work, devices. Each part registers its teardown on an `AsyncExitStack` as it comes up, so the
stop order is the reverse and nothing writes to a part that has already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import socket
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes_asyncio.client import ApiClient

from firmware_protocol import LinkConfig
from gateway.config import LINK_DEFAULTS, GatewayConfig
from gateway.device_node import DeviceNode, NodeSettings
from gateway.devices.manager import DeviceManager
from gateway.devices.sources.usb import UsbSelector
from gateway.errors import ConfigError
from gateway.kube.api import KubeApi, forget_credential_files, load_configuration
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.pod_controller import PodController
from gateway.kube.pod_informer import PodInformer
from gateway.kubelet import KubeletServer
from gateway.kubelet_serving import kubelet_server, listen, serving_context
from gateway.link.events import DeviceLoad
from gateway.link.retry import RetryPolicy
from gateway.link.session import DeviceSession, SessionConfig
from gateway.logs import LogConfig, LogStore
from gateway.logs.janitor import LogJanitor
from gateway.node_registry import NodeRegistry
from gateway.provider import GatewayProvider
from gateway.runtime.backoff import BackoffPolicy
from gateway.serving_cert import ServingCertificate
from gateway.ssh.host import SshHost
from gateway.state_dir import StateDir
from gateway.tasks import TaskSet
from gateway.transport.serial import SerialSettings

log = logging.getLogger(__name__)

# [link] keys that are not protocol or session timers: the container restart back-off and the
# wait before re-checking a missing ConfigMap or Secret.
_RUNTIME_KEYS = {
    "restart_backoff_initial_s": "initial_s",
    "restart_backoff_max_s": "max_s",
    "restart_backoff_reset_s": "reset_after_s",
}
# The API budget each served device adds (see Gateway._scale_api_budget).
QPS_PER_DEVICE = 5.0
BURST_PER_DEVICE = 10
# Pod status writes each served device allows in flight, up to a cap (see _scale_api_budget);
# the main client's connection pool is sized to hold them next to leases, node status, the
# final deletes and the pod watch.
STATUS_WRITERS_PER_DEVICE = 2
STATUS_WRITERS_MAX = 128
API_CONNECTIONS = 256
_RECONNECT_KEYS = {"reconnect_initial_s": "initial", "reconnect_max_s": "maximum"}
# The gateway's heartbeat (see gateway.config.LINK_DEFAULTS). The gateway accepts frames of
# 1 KB (the protocol's default is 512, for small devices): a device declaring 1 KB or more gets
# twice the output per header, CRC and acknowledgement. Not more yet: at 115200 baud a 2 KB
# frame is 180 ms on the wire, longer than the link's retransmission floor, and the sender
# retransmits frames still queued for the UART (docs/link.md, "Goodput").
GATEWAY_MAX_FRAME = 1024
GATEWAY_LINK_DEFAULTS: dict[str, Any] = {**LINK_DEFAULTS, "max_frame": GATEWAY_MAX_FRAME}


def timers_from_config(
    values: Mapping[str, float],
) -> tuple[SessionConfig, BackoffPolicy, float]:
    """Split the [link] table into protocol, session, reconnect and restart timers."""
    # Not timers: versions and optional features are the protocol's, a line rate is per device.
    link_fields = {f.name for f in dataclasses.fields(LinkConfig)} - {
        "versions",
        "features",
        "line_rate",
    }
    # hold_output stays on for the gateway: acknowledging output before it is on disk is
    # only for probes and tools, never a setting.
    session_fields = {f.name for f in dataclasses.fields(SessionConfig)} - {
        "backoff",
        "link",
        "hold_output",
    }
    link_args: dict[str, Any] = {}
    session_args: dict[str, Any] = {}
    restart_args: dict[str, Any] = {}
    reconnect_args: dict[str, Any] = {}
    config_retry = 5.0
    for key, value in values.items():
        if key in link_fields:
            link_args[key] = int(value) if key in ("max_frame", "window", "max_queue") else value
        elif key in session_fields:
            session_args[key] = value
        elif key in _RUNTIME_KEYS:
            restart_args[_RUNTIME_KEYS[key]] = value
        elif key in _RECONNECT_KEYS:
            reconnect_args[_RECONNECT_KEYS[key]] = value
        elif key == "config_retry_s":
            config_retry = value
        else:
            known = sorted(link_fields | session_fields | set(_RUNTIME_KEYS) | set(_RECONNECT_KEYS))
            raise ConfigError(f"link.{key}: unknown timer; known: {', '.join(known)}")
    session = SessionConfig(
        **session_args,
        link=LinkConfig(**{**GATEWAY_LINK_DEFAULTS, **link_args}),
        backoff=RetryPolicy(**reconnect_args),
    )
    return session, BackoffPolicy(**restart_args), config_retry


def detect_node_ip(api_host: str) -> str:
    """The address this host uses to reach the API server: the one the API server can call."""
    host = urlparse(api_host).hostname or "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 443))  # UDP connect sends nothing; it only picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _with_ssh_capacity(config: GatewayConfig) -> GatewayConfig:
    """`[[ssh.hosts]] capacity` is that host's `nodes.capacity_per_device` entry (which wins)."""
    per_device = dict(config.nodes.capacity_per_device)
    for host in config.ssh.hosts:
        if host.capacity:
            per_device[host.host_id] = {**host.capacity, **per_device.get(host.host_id, {})}
    nodes = dataclasses.replace(config.nodes, capacity_per_device=per_device)
    return dataclasses.replace(config, nodes=nodes)


@dataclass(frozen=True)
class GatewayParts:
    """What a started gateway is made of, built together in `Gateway.start`."""

    api: KubeApi
    events: EventRecorder
    controller: PodController
    logs: LogStore
    server: KubeletServer
    serving_cert: ServingCertificate | None  # only with kubelet.server_tls_bootstrap
    informer: PodInformer
    janitor: LogJanitor
    devices: DeviceManager
    node_ip: str


class Gateway:
    """`async with Gateway(config) as gateway`: `start()` builds every part in one go, each
    registering its own teardown, and `stop()` tears them down in reverse."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config = _with_ssh_capacity(config)
        self.session_config, self.restart_backoff, self.config_retry_s = timers_from_config(
            config.link
        )
        self.ssh_hosts: list[SshHost] = []  # SSH hosts served as nodes (docs/ssh.md)
        self.state = StateDir(config.gateway.state_dir)
        self.identity = config.gateway.identity or self.state.identity()
        self.nodes: NodeRegistry[DeviceNode] = NodeRegistry()
        self._parts: GatewayParts | None = None
        self._stack = AsyncExitStack()
        self._background = TaskSet()
        self._device_tasks = TaskSet()

    @property
    def parts(self) -> GatewayParts:
        if self._parts is None:
            raise RuntimeError("the gateway is not started")
        return self._parts

    @property
    def api(self) -> KubeApi:
        return self.parts.api

    @property
    def devices(self) -> DeviceManager:
        return self.parts.devices

    @property
    def server(self) -> KubeletServer:
        return self.parts.server

    @property
    def node_ip(self) -> str:
        return self.parts.node_ip

    @property
    def kubelet_port(self) -> int:
        return self.parts.server.port

    async def start(self) -> None:
        if self._parts is not None:
            raise RuntimeError("the gateway is started already")
        async with AsyncExitStack() as stack:
            stack.callback(self.state.clear_private)
            # Key files exist only while the clients and the kubelet API's context are built.
            private = self.state.fresh_private()
            try:
                parts = await self._build(stack, private)
            finally:
                forget_credential_files(private)
                self.state.clear_private()
            # Set before the background work starts: its callbacks reach the parts through it.
            self._parts = parts
            stack.callback(self._forget_parts)
            self._launch(stack, parts)
            self._stack = stack.pop_all()
        log.info(
            "gateway %s up: kubelet API on %s:%d, devices from %s",
            self.identity,
            self.node_ip,
            self.kubelet_port,
            ", ".join(
                [
                    *self.config.devices.ports,
                    *self.config.devices.dirs,
                    *(["udev"] if self.config.devices.udev else []),
                    *(f"usb {text}" for text in self.config.devices.usb),
                    *(host.label for host in self.config.ssh.hosts),
                ]
            )
            or "nowhere (configure devices)",
        )

    async def _build(self, stack: AsyncExitStack, private: Path) -> GatewayParts:
        """Every part, in start order; each registers its teardown on `stack` as it comes up."""
        cfg = self.config
        configuration = await load_configuration(cfg.kube.kubeconfig, private)
        api = KubeApi(
            configuration, qps=cfg.kube.qps, burst=cfg.kube.burst, connections=API_CONNECTIONS
        )
        stack.push_async_callback(api.close)
        auth_client = ApiClient(configuration)
        stack.push_async_callback(auth_client.close)
        # Events have their own client and rate budget, as the kubelet's eventRecordQPS is
        # separate from its kubeAPIQPS: a burst of events never delays status writes.
        events_api = KubeApi(configuration, qps=cfg.kube.qps, burst=cfg.kube.burst)
        stack.push_async_callback(events_api.close)
        events = EventRecorder(events_api, socket.gethostname())
        stack.push_async_callback(_drain, events)
        node_ip = cfg.kubelet.node_ip or detect_node_ip(configuration.host or "")
        controller = PodController(api, events, host_ip=node_ip, config_retry_s=self.config_retry_s)
        events.yield_to(controller.statuses.waiting)
        stack.push_async_callback(controller.close)
        logs = LogStore(
            LogConfig(
                root=Path(cfg.logs.dir),
                max_bytes=cfg.logs.max_bytes,
                max_rotated_files=max(cfg.logs.max_files - 1, 0),
            )
        )
        context, serving_cert = await serving_context(
            cfg.kubelet, api, private, self.state.private / "serving", node_ip
        )
        provider = GatewayProvider(
            controller,
            logs,
            self._load_of,
            self._session_of,
            exec_timeout_s=cfg.kubelet.exec_timeout_s,
            exec_output_limit_bytes=cfg.kubelet.exec_output_limit_bytes,
        )
        server = kubelet_server(cfg, provider, auth_client, context)
        await listen(server, cfg.kubelet.address, cfg.kubelet.port)
        stack.push_async_callback(server.stop)
        informer = PodInformer(api, controller.wants, self._on_pod)
        controller.on_node_added = informer.deliver_node
        dtr = {"on": True, "off": False, "keep": None}[cfg.devices.dtr]
        devices = DeviceManager(
            ports=cfg.devices.ports,
            dirs=cfg.devices.dirs,
            settings=SerialSettings(baudrate=cfg.devices.baudrate, dtr=dtr),
            session_config=self.session_config,
            on_session=self._on_session,
            udev=cfg.devices.udev,
            usb=tuple(UsbSelector.parse(text) for text in cfg.devices.usb),
            on_problem=self._on_device_problem,
        )
        return GatewayParts(
            api=api,
            events=events,
            controller=controller,
            logs=logs,
            server=server,
            serving_cert=serving_cert,
            informer=informer,
            janitor=LogJanitor(logs, self._pods_with_logs, self._pod_has_logs),
            devices=devices,
            node_ip=node_ip,
        )

    def _launch(self, stack: AsyncExitStack, parts: GatewayParts) -> None:
        """The background work, once every part it calls back into exists."""
        stack.push_async_callback(self._background.stop)
        if parts.serving_cert is not None:
            self._background.spawn(parts.serving_cert.run(), "serving certificate")
        self._background.spawn(parts.events.run(), "events")
        self._background.spawn(parts.controller.statuses.run(), "pod status")
        self._background.spawn(parts.informer.run(), "pod informer")
        self._background.spawn(parts.janitor.run(parts.informer.synced), "log cleanup")
        stack.push_async_callback(self._stop_devices, parts.devices)
        self._device_tasks.spawn(parts.devices.run(), "device discovery")
        # SSH hosts (docs/ssh.md): one backend each, glued to a node like a device's session.
        for host in self.config.ssh.hosts:
            backend = SshHost(
                host,
                self.config.ssh,
                on_problem=functools.partial(self._on_device_problem, host.label),
            )
            self.ssh_hosts.append(backend)
            self._on_session(host.label, backend)

    async def _stop_devices(self, devices: DeviceManager) -> None:
        """Sessions first, then the nodes; the tasks keep running on the devices (adopted on
        the next start)."""
        await devices.close()
        for task in self._device_tasks:
            task.cancel()
        for node in self.nodes.values():
            await node.close()
        for backend in self.ssh_hosts:
            await backend.close()  # commands keep running on the host (adopted next time)
        self.ssh_hosts.clear()
        await self._device_tasks.stop()

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        self.parts.controller.on_pod(kind, pod)
        if kind == "DELETED":  # the kubelet removes a deleted pod's logs
            meta = pod.get("metadata") or {}
            self.parts.janitor.pod_deleted(
                str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
            )

    def _pods_with_logs(self) -> set[str]:
        """Pods whose logs stay: every pod bound in the API, and any a runtime still writes."""
        live = set(self.parts.informer.store)
        for node in self.nodes.values():
            if node.runtime is not None:
                live |= node.runtime.pod_uids_in_use()
        return live

    def _pod_has_logs(self, uid: str) -> bool:
        """`_pods_with_logs` for one pod, without building the set of every pod."""
        if uid in self.parts.informer.store:
            return True
        return any(
            node.runtime is not None and node.runtime.uses_pod(uid) for node in self.nodes.values()
        )

    def _load_of(self, node_name: str) -> DeviceLoad | None:
        node = self.nodes.by_name(node_name)
        return node.session.load if node is not None else None

    def _session_of(self, node_name: str) -> DeviceSession | SshHost | None:
        node = self.nodes.by_name(node_name)
        return node.session if node is not None else None

    def _on_session(self, path: str, session: DeviceSession | SshHost) -> None:
        parts = self.parts
        node = DeviceNode(
            path,
            session,
            api=parts.api,
            config=self.config,
            settings=NodeSettings(
                parts.node_ip,
                parts.server.port,
                self.restart_backoff,
                owner=self.identity,
                port_for=parts.server.open_node,
            ),
            controller=parts.controller,
            events=parts.events,
            logs=parts.logs,
            informer_synced=parts.informer.synced,
            registry=self.nodes,
        )
        self.nodes.add(path, node)
        self._scale_api_budget()
        self._device_tasks.spawn(node.run(), f"device {path}")

    def _scale_api_budget(self) -> None:
        """Grow the API client's rate budget with the devices served (never below [kube] qps).

        A kubelet has its own budget per node; the gateway stands in for one kubelet per device.
        A fixed 50 QPS cannot even carry the lease renewals of 500 devices (0.1/s each) next to
        status writes, so renewals ran late. Each device adds what one virtual-kubelet process
        gets by default (client-go: 5 QPS, burst 10); the limiter only caps, it never adds load.
        Pod status writes in flight grow the same way (a kubelet writes its own pods' statuses
        beside the others'): with a fixed 8, 1000 pod starts on 50 devices queued for seconds
        behind a busy API server's answers.
        """
        served = len(self.nodes)
        # Events have a budget of their own that grows alike: at a fixed 50 QPS the ~4 events
        # of each of 1000 pods started on 50 devices took 80 s to write.
        for limiter in (self.parts.api.limiter, self.parts.events.api.limiter):
            limiter.rate = max(self.config.kube.qps, QPS_PER_DEVICE * served)
            limiter.capacity = float(max(self.config.kube.burst, BURST_PER_DEVICE * served))
        self.parts.controller.statuses.set_writers(
            min(STATUS_WRITERS_PER_DEVICE * served, STATUS_WRITERS_MAX)
        )

    def _on_device_problem(self, key: str, reason: str, message: str) -> None:
        """A device cannot be opened (permission, busy): a Warning Event on its node, or on the
        gateway host's name while the device has never answered (its node name is unknown)."""
        if not reason or self._parts is None:
            return
        node = self.nodes.get(key)
        name = node.name if node is not None and node.name else socket.gethostname()
        self._parts.events.record(ObjectRef.node(name), "Warning", reason, message)

    def _forget_parts(self) -> None:
        self._parts = None

    async def stop(self) -> None:
        """Every part's teardown, in the reverse order of start; device tasks keep running on
        the devices (adopted on the next start). Stopping twice is harmless."""
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()

    async def __aenter__(self) -> Gateway:
        await self.start()  # a failed start has torn down what it built
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _drain(events: EventRecorder) -> None:
    """Events still queued at stop are written if the API answers within 2 s."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(events.drain(), 2.0)
