"""The gateway process: wires devices, runtime, Kubernetes side and kubelet API together.

Start order: API client, event recorder, pod controller, kubelet API, pod informer, devices.
Stop order is the reverse, so nothing writes to a part that has already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
import ssl
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes_asyncio.client import ApiClient

from firmware_protocol import LinkConfig
from gateway.config import LINK_DEFAULTS, GatewayConfig, parse_port_range
from gateway.device_node import DeviceNode, NodeSettings
from gateway.devices.manager import DeviceManager
from gateway.devices.sources.usb import UsbSelector
from gateway.errors import ConfigError, WireletError
from gateway.kube.api import KubeApi, forget_credential_files, load_configuration
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.pod_controller import PodController
from gateway.kube.pod_informer import PodInformer
from gateway.kubelet import (
    ChainAuthenticator,
    KubeletServer,
    PortRange,
    ServerLimits,
    SubjectAccessReviewAuthorizer,
    TokenReviewAuthenticator,
    X509Authenticator,
    server_ssl_context,
)
from gateway.link.backoff import BackoffPolicy as ReconnectPolicy
from gateway.link.events import DeviceLoad
from gateway.link.session import DeviceSession, SessionConfig
from gateway.logs import LogConfig, LogStore
from gateway.logs.janitor import LogJanitor
from gateway.provider import GatewayProvider
from gateway.runtime.backoff import BackoffPolicy
from gateway.serving_cert import ServingCertificate, self_signed
from gateway.state_dir import StateDir
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
_RECONNECT_KEYS = {"reconnect_initial_s": "initial", "reconnect_max_s": "maximum"}
# The gateway's heartbeat (see gateway.config.LINK_DEFAULTS). The gateway accepts frames of
# 1 KB (the protocol's default is 512, for small devices): a device declaring 1 KB or more gets
# twice the output per header, CRC and acknowledgement. Not more yet: at 115200 baud a 2 KB
# frame is 180 ms on the wire, longer than the link's retransmission floor, and the sender
# retransmits frames still queued for the UART (docs/link.md, "Goodput").
GATEWAY_MAX_FRAME = 1024
GATEWAY_LINK_DEFAULTS: dict[str, Any] = {**LINK_DEFAULTS, "max_frame": GATEWAY_MAX_FRAME}
# How long the start waits for a self-approved serving certificate before going on without.
FIRST_SERVING_CERT_WAIT_S = 30.0


def timers_from_config(
    values: Mapping[str, float],
) -> tuple[SessionConfig, BackoffPolicy, float]:
    """Split the [link] table into protocol, session, reconnect and restart timers."""
    link_fields = {f.name for f in dataclasses.fields(LinkConfig)} - {"versions"}
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
        backoff=ReconnectPolicy(**reconnect_args),
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


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.session_config, self.restart_backoff, self.config_retry_s = timers_from_config(
            config.link
        )
        self.api: KubeApi | None = None
        # Events have their own client and rate budget, as the kubelet's eventRecordQPS is
        # separate from its kubeAPIQPS: a burst of events never delays status writes.
        self.events_api: KubeApi | None = None
        self.auth_client: ApiClient | None = None
        self.events: EventRecorder | None = None
        self.controller: PodController | None = None
        self.server: KubeletServer | None = None
        self.informer: PodInformer | None = None
        self.janitor: LogJanitor | None = None
        self.devices: DeviceManager | None = None
        self.nodes: dict[str, DeviceNode] = {}
        self.claimed: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self.state = StateDir(config.gateway.state_dir)
        self.identity = config.gateway.identity or self.state.identity()
        self.node_ip = ""
        self.kubelet_port = 0
        self.serving_cert: ServingCertificate | None = None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._crashed)
        return task

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        # Key files exist only while the clients and the kubelet API's context are built.
        private = self.state.fresh_private()
        try:
            await self._start(private)
        finally:
            forget_credential_files(private)
            self.state.clear_private()
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
                ]
            )
            or "nowhere (configure devices)",
        )

    async def _start(self, private: Path) -> None:
        cfg = self.config
        configuration = await load_configuration(cfg.kube.kubeconfig, private)
        self.api = KubeApi(configuration, qps=cfg.kube.qps, burst=cfg.kube.burst)
        self.auth_client = ApiClient(configuration)
        self.node_ip = cfg.kubelet.node_ip or detect_node_ip(configuration.host or "")
        self.events_api = KubeApi(configuration, qps=cfg.kube.qps, burst=cfg.kube.burst)
        self.events = EventRecorder(self.events_api, socket.gethostname())
        self.controller = PodController(
            self.api, self.events, host_ip=self.node_ip, config_retry_s=self.config_retry_s
        )
        self.logs = LogStore(
            LogConfig(
                root=Path(cfg.logs.dir),
                max_bytes=cfg.logs.max_bytes,
                max_rotated_files=max(cfg.logs.max_files - 1, 0),
            )
        )
        await self._start_kubelet_api(private)
        self.informer = PodInformer(self.api, self.controller.wants, self._on_pod)
        self.controller.on_node_added = self.informer.deliver_node
        self.janitor = LogJanitor(self.logs, self._pods_with_logs)
        self._tasks += [
            self._spawn(self.events.run(), "events"),
            self._spawn(self.controller.run_status_writer(), "pod status"),
            self._spawn(self.informer.run(), "pod informer"),
            self._spawn(self.janitor.run(self.informer.synced), "log cleanup"),
        ]
        dtr = {"on": True, "off": False, "keep": None}[cfg.devices.dtr]
        self.devices = DeviceManager(
            ports=cfg.devices.ports,
            dirs=cfg.devices.dirs,
            settings=SerialSettings(baudrate=cfg.devices.baudrate, dtr=dtr),
            session_config=self.session_config,
            on_session=self._on_session,
            udev=cfg.devices.udev,
            usb=tuple(UsbSelector.parse(text) for text in cfg.devices.usb),
            on_problem=self._on_device_problem,
        )
        self._tasks.append(self._spawn(self.devices.run(), "device discovery"))

    async def _start_kubelet_api(self, private: Path) -> None:
        cfg = self.config.kubelet
        assert self.controller is not None and self.auth_client is not None
        if cfg.tls_cert and cfg.tls_key:
            cert, key = Path(cfg.tls_cert), Path(cfg.tls_key)
        else:
            cert, key = self_signed(private, self.node_ip)
            if not cfg.server_tls_bootstrap:
                log.warning(
                    "no kubelet.tls_cert configured: serving a self-signed certificate; an API "
                    "server started with --kubelet-certificate-authority will refuse it (set "
                    "kubelet.tls_cert/tls_key to a certificate from that CA, or "
                    "kubelet.server_tls_bootstrap = true)"
                )
        context = server_ssl_context(cert, key, Path(cfg.client_ca) if cfg.client_ca else None)
        if cfg.server_tls_bootstrap:
            await self._bootstrap_serving_cert(context)
        self.server = KubeletServer(
            GatewayProvider(
                self.controller,
                self.logs,
                self._load_of,
                self._session_of,
                exec_timeout_s=cfg.exec_timeout_s,
                exec_output_limit_bytes=cfg.exec_output_limit_bytes,
            ),
            authenticator=ChainAuthenticator(
                X509Authenticator(), TokenReviewAuthenticator(self.auth_client)
            ),
            authorizer=SubjectAccessReviewAuthorizer(self.auth_client),
            ssl_context=context,
            host=cfg.address,
            port=cfg.port,
            node_ports=PortRange(*parse_port_range(cfg.node_ports)),
            limits=ServerLimits(
                idle_timeout_s=cfg.idle_timeout_s, max_connections=cfg.max_connections
            ),
            configz={
                "address": cfg.address,
                "containerLogMaxSize": str(self.config.logs.max_bytes),
                "containerLogMaxFiles": self.config.logs.max_files,
                "nodeLeaseDurationSeconds": self.config.nodes.lease_duration_s,
                "tlsCertFile": cfg.tls_cert or "",
                "serverTLSBootstrap": cfg.server_tls_bootstrap,
            },
        )
        try:
            await self.server.start()
        except OSError as exc:
            raise ConfigError(
                f"kubelet.port: cannot listen on {cfg.address}:{cfg.port}: {exc.strerror} "
                "(another kubelet or gateway there? choose another with --kubelet-port or "
                "[kubelet] port; 0 picks a free one)"
            ) from None
        self.kubelet_port = self.server.port

    async def _bootstrap_serving_cert(self, context: ssl.SSLContext) -> None:
        """Serving certificate from the cluster; the self-signed one serves until it arrives.

        When the gateway approves its own request, the start waits for the first certificate
        (seconds), so the API server never meets the self-signed one; otherwise an
        administrator approves it whenever they do, and the log says how."""
        assert self.api is not None
        host = socket.gethostname()
        self.serving_cert = ServingCertificate(
            self.api,
            context,
            self.state.private / "serving",
            host=host,
            ips=[self.node_ip],
            dns_names=[host],
            approve=self.config.kubelet.serving_cert_approve,
        )
        if self.config.kubelet.serving_cert_approve:
            try:
                await self.serving_cert.obtain(timeout_s=FIRST_SERVING_CERT_WAIT_S)
            except WireletError as exc:
                log.error("no serving certificate from the cluster yet: %s", exc)
        self._tasks.append(self._spawn(self.serving_cert.run(), "serving certificate"))

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        assert self.controller is not None and self.janitor is not None
        self.controller.on_pod(kind, pod)
        if kind == "DELETED":
            self.janitor.pod_deleted()  # the kubelet removes a deleted pod's logs

    def _pods_with_logs(self) -> set[str]:
        """Pods whose logs stay: every pod bound in the API, and any a runtime still writes."""
        live = set(self.informer.store) if self.informer is not None else set()
        for node in self.nodes.values():
            if node.runtime is not None:
                live |= node.runtime.pod_uids_in_use()
        return live

    def _load_of(self, node_name: str) -> DeviceLoad | None:
        node = self.nodes.get(self.claimed.get(node_name, ""))
        return node.session.load if node is not None else None

    def _session_of(self, node_name: str) -> DeviceSession | None:
        node = self.nodes.get(self.claimed.get(node_name, ""))
        return node.session if node is not None else None

    def _on_session(self, path: str, session: DeviceSession) -> None:
        assert self.api and self.controller and self.events and self.informer and self.server
        node = DeviceNode(
            path,
            session,
            api=self.api,
            config=self.config,
            settings=NodeSettings(
                self.node_ip,
                self.kubelet_port,
                self.restart_backoff,
                owner=self.identity,
                port_for=self.server.open_node,
            ),
            controller=self.controller,
            events=self.events,
            logs=self.logs,
            informer_synced=self.informer.synced,
            claimed=self.claimed,
        )
        self.nodes[path] = node
        self._scale_api_budget()
        self._device_tasks[path] = self._spawn(node.run(), f"device {path}")

    def _scale_api_budget(self) -> None:
        """Grow the API client's rate budget with the devices served (never below [kube] qps).

        A kubelet has its own budget per node; the gateway stands in for one kubelet per device.
        A fixed 50 QPS cannot even carry the lease renewals of 500 devices (0.1/s each) next to
        status writes, so renewals ran late. Each device adds what one virtual-kubelet process
        gets by default (client-go: 5 QPS, burst 10); the limiter only caps, it never adds load.
        """
        assert self.api is not None
        served = len(self.nodes)
        self.api.limiter.rate = max(self.config.kube.qps, QPS_PER_DEVICE * served)
        self.api.limiter.capacity = float(max(self.config.kube.burst, BURST_PER_DEVICE * served))

    def _on_device_problem(self, key: str, reason: str, message: str) -> None:
        """A device cannot be opened (permission, busy): a Warning Event on its node, or on the
        gateway host's name while the device has never answered (its node name is unknown)."""
        if not reason or self.events is None:
            return
        node = self.nodes.get(key)
        name = node.name if node is not None and node.name else socket.gethostname()
        self.events.record(ObjectRef.node(name), "Warning", reason, message)

    async def stop(self) -> None:
        """Reverse order; device tasks keep running on the devices (adopted on the next start)."""
        if self.devices is not None:
            await self.devices.close()
        for task in self._device_tasks.values():
            task.cancel()
        for node in self.nodes.values():
            await node.close()
        for task in [*self._device_tasks.values(), *self._tasks]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.controller is not None:
            await self.controller.close()
        if self.events is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.events.drain(), 2.0)
        if self.server is not None:
            await self.server.stop()
        if self.auth_client is not None:
            await self.auth_client.close()
        if self.api is not None:
            await self.api.close()
        if self.events_api is not None:
            await self.events_api.close()
        self.state.clear_private()

    async def __aenter__(self) -> Gateway:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
