"""A kubeconfig for an API server that is not there: the gateway starts and retries the API in
the background, so start-up and shutdown are tested without a control plane."""

from __future__ import annotations

from pathlib import Path

from hil.cluster.kubeconfig import write_kubeconfig
from hil.cluster.pki import CertificateAuthority, KeyPair

# Port 9 (discard): nothing listens there, so every call fails fast with "connection refused".
OFFLINE_SERVER = "https://127.0.0.1:9"


def offline_kubeconfig(directory: Path) -> Path:
    """With the client key embedded (as kubeadm writes admin.conf); CA and client files beside
    it under `directory/offline-pki`."""
    pki = directory / "offline-pki"
    ca = CertificateAuthority.create("test-ca")
    ca_pair = ca.save(KeyPair(pki / "ca.crt", pki / "ca.key"))
    client = ca.issue_to_files(
        KeyPair(pki / "admin.crt", pki / "admin.key"), "admin", orgs=["system:masters"], client=True
    )
    return write_kubeconfig(
        directory / "kubeconfig",
        server=OFFLINE_SERVER,
        ca_cert=ca_pair.cert,
        client_cert=client.cert,
        client_key=client.key,
        user="admin",
    )
