"""The kubelet API's serving certificate: self-signed, or from the cluster through a CSR.

Without kubelet.tls_cert the gateway starts with a self-signed certificate, like the kubelet
without --tls-cert-file (the log line says how to give it one the API server will trust); with
kubelet.server_tls_bootstrap it then requests one from the cluster and rotates it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.certs import alt_names, new_key, subject, write_key
from gateway.csr import CsrError, approve, serving_request, submit, wait_for_certificate
from gateway.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

# Self-signed certificates are made anew at every start, so a year is plenty.
VALIDITY_DAYS = 365
# Renew at this fraction of a certificate's lifetime (the kubelet renews at 70-90 %).
ROTATE_FRACTION = 0.8
# After a failed renewal, try again this much later.
RETRY_S = 30.0


def self_signed(directory: Path, node_ip: str) -> tuple[Path, Path]:
    key = new_key()
    host = socket.gethostname()
    name = subject(f"{host}@wirelet")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(alt_names([node_ip], [host]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_pair(directory, "kubelet", cert.public_bytes(serialization.Encoding.PEM), key)


class ServingCertificate:
    """The kubelet API's certificate from the cluster (signer kubernetes.io/kubelet-serving).

    The kubelet's `serverTLSBootstrap`: a key and CSR for CN system:node:<host>, O system:nodes,
    SANs = the addresses and names the nodes advertise; approved by an administrator (the log
    says the command), or by the gateway itself when configured and allowed (deploy/rbac.yaml).
    The issued certificate is loaded into the live SSL context, so new connections use it at
    once, and renewed at `rotate_fraction` of its lifetime, all without a restart.
    """

    def __init__(
        self,
        api: KubeApi,
        context: ssl.SSLContext,
        directory: Path,
        *,
        host: str,
        ips: Sequence[str],
        dns_names: Sequence[str],
        approve: bool,
        expiration_s: int | None = None,
        rotate_fraction: float = ROTATE_FRACTION,
        retry_s: float = RETRY_S,
    ) -> None:
        self.api = api
        self.context = context
        self.directory = directory
        self.host = host
        self.ips = tuple(ips)
        self.dns_names = tuple(dns_names)
        self.approve = approve
        self.expiration_s = expiration_s
        self.rotate_fraction = rotate_fraction
        self.retry_s = retry_s
        self.current: x509.Certificate | None = None
        self.issued = 0  # certificates loaded so far

    async def obtain(self, timeout_s: float | None = None) -> x509.Certificate:
        """Request, wait for, and start serving a new certificate."""
        key = new_key()
        name = await submit(
            self.api,
            serving_request(key, self.host, self.ips, self.dns_names, self.expiration_s),
        )
        log.info("requested the kubelet API serving certificate: CSR %s", name)
        if self.approve:
            await approve(self.api, name, "approved by the wirelet gateway that requested it")
        pem = await wait_for_certificate(
            self.api, name, timeout_s=timeout_s, remind=lambda message: log.warning("%s", message)
        )
        cert = x509.load_pem_x509_certificate(pem)
        # Kept (the key 0600) in the gateway's private folder, as the kubelet keeps its pair in
        # its pki folder: the next start serves it at once instead of asking the cluster again.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert_path, key_path = _write_pair(self.directory, "serving", pem, key)
        # New handshakes use the new pair; connections already open keep theirs.
        self.context.load_cert_chain(cert_path, key_path)
        self.current = cert
        self.issued += 1
        log.info(
            "kubelet API serving certificate from CSR %s, valid until %s",
            name,
            cert.not_valid_after_utc.isoformat(),
        )
        return cert

    def load_saved(self, now: datetime.datetime | None = None) -> x509.Certificate | None:
        """The pair an earlier run was issued, served now if it still fits: unexpired, and
        naming this host's addresses and names (a host whose address changed asks anew). With a
        cluster whose administrator approves CSRs by hand, a restart would otherwise serve the
        self-signed certificate, which the API server refuses, until someone approved again.
        A pair past its renewal point is served and renewed at once (`run`)."""
        cert_path, key_path = self.directory / "serving.crt", self.directory / "serving.key"
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError):
            return None  # none saved (the first start) or unreadable: ask the cluster
        moment = now or datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= moment < cert.not_valid_after_utc:
            return None
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        if not set(alt_names(self.ips, self.dns_names)) <= set(san):
            log.info("the saved kubelet API serving certificate names other addresses: not used")
            return None
        try:
            self.context.load_cert_chain(cert_path, key_path)
        except (OSError, ssl.SSLError) as exc:
            log.warning("the saved kubelet API serving certificate cannot be used: %s", exc)
            return None
        self.current = cert
        log.info(
            "kubelet API serving certificate from an earlier run, valid until %s",
            cert.not_valid_after_utc.isoformat(),
        )
        return cert

    def renew_in(self, now: datetime.datetime | None = None) -> float:
        """Seconds until the current certificate should be renewed (0: now)."""
        if self.current is None:
            return 0.0
        start, end = self.current.not_valid_before_utc, self.current.not_valid_after_utc
        due = start + (end - start) * self.rotate_fraction
        return max((due - (now or datetime.datetime.now(datetime.UTC))).total_seconds(), 0.0)

    async def run(self) -> None:
        """Keep a valid certificate: obtain one if none yet, then renew before each expires."""
        while True:
            await asyncio.sleep(self.renew_in())
            try:
                await self.obtain()
            except (CsrError, KubeApiError) as exc:
                log.error(
                    "kubelet API serving certificate not renewed: %s; retrying in %g s",
                    exc,
                    self.retry_s,
                )
                await asyncio.sleep(self.retry_s)


def _write_pair(
    directory: Path, stem: str, cert_pem: bytes, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path = directory / f"{stem}.crt"
    cert_path.write_bytes(cert_pem)
    return cert_path, write_key(directory / f"{stem}.key", key)
