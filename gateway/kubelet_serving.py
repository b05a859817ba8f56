"""How the gateway serves the kubelet API: its TLS context, and the server around a provider.

The serving certificate is the configured one, or a self-signed one that serves until the
cluster signs one (kubelet.server_tls_bootstrap). The server gets the kubelet's authentication
(client certificates, then bearer tokens through TokenReview) and authorization
(SubjectAccessReview), its port range for per-node endpoints and its connection limits.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

from kubernetes_asyncio.client import ApiClient

from gateway.config import GatewayConfig, KubeletApiConfig, parse_port_range
from gateway.errors import ConfigError, WireletError
from gateway.kube.api import KubeApi
from gateway.kubelet import (
    ChainAuthenticator,
    KubeletProvider,
    KubeletServer,
    PortRange,
    ServerLimits,
    SubjectAccessReviewAuthorizer,
    TokenReviewAuthenticator,
    X509Authenticator,
    server_ssl_context,
)
from gateway.serving_cert import ServingCertificate, self_signed

log = logging.getLogger(__name__)

# How long the start waits for a self-approved serving certificate before going on without.
FIRST_SERVING_CERT_WAIT_S = 30.0


async def serving_context(
    cfg: KubeletApiConfig, api: KubeApi, private: Path, serving_dir: Path, node_ip: str
) -> tuple[ssl.SSLContext, ServingCertificate | None]:
    """The kubelet API's TLS context; with server_tls_bootstrap, also the certificate that
    keeps it signed by the cluster (key files in `serving_dir`). A self-signed certificate,
    when one is needed, is written to `private` (the gateway's credential folder)."""
    if cfg.tls_cert and cfg.tls_key:
        cert, key = Path(cfg.tls_cert), Path(cfg.tls_key)
    else:
        cert, key = self_signed(private, node_ip)
        if not cfg.server_tls_bootstrap:
            log.warning(
                "no kubelet.tls_cert configured: serving a self-signed certificate; an API "
                "server started with --kubelet-certificate-authority will refuse it (set "
                "kubelet.tls_cert/tls_key to a certificate from that CA, or "
                "kubelet.server_tls_bootstrap = true)"
            )
    if not cfg.client_ca:
        # The API server calls kubelets with a client certificate (--kubelet-client-certificate);
        # without a CA to check it every `kubectl logs`/`exec` through it gets 401.
        log.warning(
            "no kubelet.client_ca configured: client certificates are not accepted, so the API "
            "server's requests (kubectl logs, exec, attach) are refused with 401 unless they "
            "carry a bearer token; set kubelet.client_ca to the CA that signed the API "
            "server's --kubelet-client-certificate (kubeadm: /etc/kubernetes/pki/ca.crt)"
        )
    context = _ssl_context(cfg, cert, key)
    if not cfg.server_tls_bootstrap:
        return context, None
    return context, await _bootstrap_serving_cert(cfg, api, context, serving_dir, node_ip)


def _ssl_context(cfg: KubeletApiConfig, cert: Path, key: Path) -> ssl.SSLContext:
    """The server context; a configured file that cannot be used is a config error naming
    its key and path (exit 2), as a wrong value in the config file is."""
    client_ca = Path(cfg.client_ca) if cfg.client_ca else None
    if cfg.tls_cert and cfg.tls_key:
        _readable("kubelet.tls_cert", cert)
        _readable("kubelet.tls_key", key)
        try:
            server_ssl_context(cert, key, None)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"kubelet.tls_cert/tls_key: {cert} and {key} are not a PEM certificate and its "
                f"private key ({exc.reason or exc})"
            ) from None
    if client_ca is not None:
        _readable("kubelet.client_ca", client_ca)
    try:
        return server_ssl_context(cert, key, client_ca)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"kubelet.client_ca: {client_ca} holds no PEM CA certificate ({exc.reason or exc})"
        ) from None


def _readable(key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


async def _bootstrap_serving_cert(
    cfg: KubeletApiConfig, api: KubeApi, context: ssl.SSLContext, serving_dir: Path, node_ip: str
) -> ServingCertificate:
    """Serving certificate from the cluster (an earlier run's while it fits); the self-signed
    one serves until it arrives.

    When the gateway approves its own request, the start waits for the first certificate
    (seconds), so the API server never meets the self-signed one; otherwise an
    administrator approves it whenever they do, and the log says how."""
    host = socket.gethostname()
    serving_cert = ServingCertificate(
        api,
        context,
        serving_dir,
        host=host,
        ips=[node_ip],
        dns_names=[host],
        approve=cfg.serving_cert_approve,
    )
    if serving_cert.load_saved() is None and cfg.serving_cert_approve:
        try:
            await serving_cert.obtain(timeout_s=FIRST_SERVING_CERT_WAIT_S)
        except WireletError as exc:
            log.error("no serving certificate from the cluster yet: %s", exc)
    return serving_cert


def kubelet_server(
    config: GatewayConfig,
    provider: KubeletProvider,
    auth_client: ApiClient,
    context: ssl.SSLContext,
) -> KubeletServer:
    cfg = config.kubelet
    return KubeletServer(
        provider,
        authenticator=ChainAuthenticator(
            X509Authenticator(), TokenReviewAuthenticator(auth_client)
        ),
        authorizer=SubjectAccessReviewAuthorizer(auth_client),
        ssl_context=context,
        host=cfg.address,
        port=cfg.port,
        node_ports=PortRange(*parse_port_range(cfg.node_ports)),
        limits=ServerLimits(idle_timeout_s=cfg.idle_timeout_s, max_connections=cfg.max_connections),
        configz={
            "address": cfg.address,
            "containerLogMaxSize": str(config.logs.max_bytes),
            "containerLogMaxFiles": config.logs.max_files,
            "nodeLeaseDurationSeconds": config.nodes.lease_duration_s,
            "tlsCertFile": cfg.tls_cert or "",
            "serverTLSBootstrap": cfg.server_tls_bootstrap,
        },
    )


async def listen(server: KubeletServer, address: str, port: int) -> None:
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(
            f"kubelet.port: cannot listen on {address}:{port}: {exc.strerror} "
            "(another kubelet or gateway there? choose another with --kubelet-port or "
            "[kubelet] port; 0 picks a free one)"
        ) from None
