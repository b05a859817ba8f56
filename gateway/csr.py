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
import ipaddress
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def gateway_user(name: str) -> str:
    return f"{GATEWAY_USER_PREFIX}{name}"


def client_request(key: ec.EllipticCurvePrivateKey, gateway_name: str) -> CsrRequest:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, GATEWAY_GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, gateway_user(gateway_name)),
        ]
    )
    pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    return CsrRequest(
        f"wirelet-gateway-{_dns_label(gateway_name)}-",
        pem,
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
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{host}"),
        ]
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    return CsrRequest(
        f"wirelet-serving-{_dns_label(host)}-",
        pem,
        SERVING_SIGNER,
        ("digital signature", "server auth"),
        expiration_s,
    )


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
