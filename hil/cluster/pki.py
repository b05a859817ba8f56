"""A throwaway certificate authority and the certificates a local control plane needs."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

# Long enough for any test run or demo, short enough that a leaked key is worthless soon.
_VALIDITY = datetime.timedelta(days=30)
# Clock skew between the test host and the API server is zero, but be lenient anyway.
_BACKDATE = datetime.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class KeyPair:
    """PEM files of a certificate and its private key."""

    cert: Path
    key: Path


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to generate and accepted by every Kubernetes component.
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Owner-only from the moment the file exists (keys, kubeconfigs that embed one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _name(cn: str, orgs: list[str] | tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, *, ca: bool
) -> x509.CertificateBuilder:
    """A certificate valid from a little before now for _VALIDITY: a CA, or a leaf that signs
    nothing (its uses come from extended key usages)."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


class CertificateAuthority:
    """A self-signed CA that signs serving and client certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, cn: str) -> CertificateAuthority:
        key = new_ec_key()
        name = _name(cn)
        cert = (
            _builder(name, name, key.public_key(), ca=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        log.debug("created CA %s", cn)
        return cls(cert, key)

    @classmethod
    def load(cls, pair: KeyPair) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{pair.key} is not an EC key")
        return cls(cert, key)

    def save(self, pair: KeyPair) -> KeyPair:
        _write_public(pair.cert, cert_pem(self.cert))
        write_private(pair.key, key_pem(self.key))
        return pair

    def issue(
        self,
        cn: str,
        *,
        orgs: list[str] | tuple[str, ...] = (),
        hosts: list[str] | None = None,
        server: bool = False,
        client: bool = False,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Sign a leaf certificate; hosts become IP or DNS subject alternative names."""
        key = new_ec_key()
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = _builder(_name(cn, orgs), self.cert.subject, key.public_key(), ca=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def issue_to_files(
        self,
        pair: KeyPair,
        cn: str,
        *,
        orgs: list[str] | tuple[str, ...] = (),
        hosts: list[str] | None = None,
        server: bool = False,
        client: bool = False,
    ) -> KeyPair:
        cert, key = self.issue(cn, orgs=orgs, hosts=hosts, server=server, client=client)
        _write_public(pair.cert, cert_pem(cert))
        write_private(pair.key, key_pem(key))
        log.debug("issued %s (orgs=%s, hosts=%s) to %s", cn, orgs, hosts, pair.cert)
        return pair


def write_service_account_keys(private: Path, public: Path) -> None:
    """RSA pair the API server signs service-account tokens with (RS256 is the common ground)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(private, key_pem(key))
    _write_public(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
