"""Certificates through the API server's CertificateSigningRequest API (certificates.k8s.io/v1).

Two kinds, as a kubelet has them:
- the gateway's client identity: signer `kubernetes.io/kube-apiserver-client`, user
  `wirelet:gateway:<name>` in group `wirelet:gateways` (not `system:node:*`: one gateway serves
  many nodes, and NodeRestriction would confine a node identity to one), see
  `gateway.commands.bootstrap` and deploy/rbac.yaml;
- the kubelet API's serving certificate: signer `kubernetes.io/kubelet-serving`, which only
  signs subject O=system:nodes, CN=system:node:<name>, DNS/IP SANs, usages digital signature +
  server auth (+ key encipherment for RSA), see `gateway.serving_cert`.

Nothing here writes files: callers decide where keys go.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.certs import alt_names, subject
from gateway.errors import WireletError
from gateway.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
GATEWAY_GROUP = "wirelet:gateways"
GATEWAY_USER_PREFIX = "wirelet:gateway:"
# How often a pending request is looked at again, and reminded about in the log.
POLL_INTERVAL_S = 1.0
REMIND_INTERVAL_S = 60.0


class CsrError(WireletError):
    """A certificate request was denied, failed, or not answered in time."""


@dataclass(frozen=True, slots=True)
class CsrRequest:
    """A CertificateSigningRequest to submit."""

    name_prefix: str
    pem: bytes
    signer: str
    usages: tuple[str, ...]
    expiration_s: int | None = None


def gateway_user(name: str) -> str:
    return f"{GATEWAY_USER_PREFIX}{name}"


def client_request(key: ec.EllipticCurvePrivateKey, gateway_name: str) -> CsrRequest:
    return CsrRequest(
        f"wirelet-gateway-{_dns_label(gateway_name)}-",
        _request_pem(key, subject(gateway_user(gateway_name), GATEWAY_GROUP)),
        CLIENT_SIGNER,
        ("digital signature", "client auth"),
    )


def serving_request(
    key: ec.EllipticCurvePrivateKey,
    host: str,
    ips: Sequence[str],
    dns_names: Sequence[str],
    expiration_s: int | None = None,
) -> CsrRequest:
    """What kubernetes.io/kubelet-serving signs: O=system:nodes, CN=system:node:<host>."""
    name = subject(f"system:node:{host}", "system:nodes")
    return CsrRequest(
        f"wirelet-serving-{_dns_label(host)}-",
        _request_pem(key, name, alt_names(ips, dns_names)),
        SERVING_SIGNER,
        ("digital signature", "server auth"),
        expiration_s,
    )


def _request_pem(
    key: ec.EllipticCurvePrivateKey,
    name: x509.Name,
    sans: x509.SubjectAlternativeName | None = None,
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


async def submit(api: KubeApi, request: CsrRequest) -> str:
    """Create the CertificateSigningRequest; its name."""
    name = f"{request.name_prefix}{secrets.token_hex(4)}"
    spec: dict[str, Any] = {
        "request": base64.b64encode(request.pem).decode(),
        "signerName": request.signer,
        "usages": list(request.usages),
    }
    if request.expiration_s is not None:
        spec["expirationSeconds"] = request.expiration_s
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        await api.create(CSR_PATH, body)
    except KubeApiError as exc:
        raise CsrError(f"cannot create CertificateSigningRequest {name}: {_why(exc)}") from None
    return name


async def approve(api: KubeApi, name: str, message: str) -> None:
    """Approve as `kubectl certificate approve` does (needs the `approve` verb on the signer)."""
    try:
        csr = await api.get(f"{CSR_PATH}/{name}")
        conditions = (csr.get("status") or {}).get("conditions") or []
        conditions.append(
            {
                "type": "Approved",
                "status": "True",
                "reason": "WireletSelfApproved",
                "message": message,
            }
        )
        csr.setdefault("status", {})["conditions"] = conditions
        await api.request("PUT", f"{CSR_PATH}/{name}/approval", body=csr)
    except KubeApiError as exc:
        raise CsrError(f"cannot approve CertificateSigningRequest {name}: {_why(exc)}") from None


async def wait_for_certificate(
    api: KubeApi,
    name: str,
    *,
    timeout_s: float | None = None,
    remind: Callable[[str], None] | None = None,
) -> bytes:
    """The issued certificate (PEM) once the request is approved and signed.

    `remind` gets a message with the approve command at once and every REMIND_INTERVAL_S
    while the request waits for approval."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reminded: float | None = None
    while True:
        try:
            csr = await api.get(f"{CSR_PATH}/{name}")
        except KubeApiError as exc:
            raise CsrError(f"cannot read CertificateSigningRequest {name}: {_why(exc)}") from None
        status = csr.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Denied", "Failed") and condition.get("status") == "True":
                raise CsrError(
                    f"CertificateSigningRequest {name} was {condition['type'].lower()}: "
                    f"{condition.get('reason', '')} {condition.get('message', '')}".rstrip()
                )
        certificate = status.get("certificate")
        if certificate:
            return base64.b64decode(certificate)
        approved = any(
            c.get("type") == "Approved" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        now = loop.time()
        if (
            remind is not None
            and not approved
            and (reminded is None or now - reminded >= REMIND_INTERVAL_S)
        ):
            remind(
                f"waiting for approval of CertificateSigningRequest {name}: "
                f"kubectl certificate approve {name}"
            )
            reminded = now
        if timeout_s is not None and now - started >= timeout_s:
            state = "approved but not signed (is kube-controller-manager signing?)"
            raise CsrError(
                f"CertificateSigningRequest {name} not issued within {timeout_s:g} s: "
                f"{state if approved else f'not approved (kubectl certificate approve {name})'}"
            )
        await asyncio.sleep(POLL_INTERVAL_S)


def _dns_label(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower()).strip("-")
    return cleaned[:40] or "gateway"


def _why(exc: KubeApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return str(body.get("message") or f"HTTP {exc.status} {exc.reason}")
