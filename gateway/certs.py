"""Keys, names and files of X.509 certificates, shared by every certificate the gateway makes.

Pure helpers over `cryptography`: the self-signed serving certificate (gateway.serving_cert),
certificate requests (gateway.csr) and `wirelet bootstrap` build theirs from these, so a key
type, a subject or a key file's mode is decided in one place.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to make, and every Kubernetes signer accepts it.
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """The key as PEM, private from its first byte: the file is created 0600, then written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem(key))
    return path


def subject(common_name: str, organization: str = "") -> x509.Name:
    """O=<organization> (when given), CN=<common_name>: the user and group Kubernetes sees."""
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def alt_names(ips: Sequence[str], dns_names: Sequence[str]) -> x509.SubjectAlternativeName:
    """DNS names, then IP addresses, each once, in the order given."""
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns_names)]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    return x509.SubjectAlternativeName(names)
