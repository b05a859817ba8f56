"""Fixtures for kubelet API tests: a test PKI, a server over real TLS, TLS clients."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from gateway.kubelet import (
    AlwaysAllowAuthorizer,
    Authenticator,
    Authorizer,
    ChainAuthenticator,
    KubeletServer,
    X509Authenticator,
    server_ssl_context,
)
from hil.cluster.pki import CertificateAuthority, KeyPair

from .provider import InMemoryProvider


@dataclass(frozen=True)
class Pki:
    ca: Path
    serving: KeyPair
    directory: Path
    authority: CertificateAuthority

    def client(self, cn: str, orgs: list[str] | None = None) -> KeyPair:
        pair = KeyPair(self.directory / f"{cn}.crt", self.directory / f"{cn}.key")
        return self.authority.issue_to_files(pair, cn, orgs=orgs or [], client=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    authority = CertificateAuthority.create("kubelet-test-ca")
    ca = authority.save(KeyPair(directory / "ca.crt", directory / "ca.key"))
    serving = authority.issue_to_files(
        KeyPair(directory / "serving.crt", directory / "serving.key"),
        "wirelet-gateway",
        hosts=["127.0.0.1", "localhost"],
        server=True,
    )
    return Pki(ca.cert, serving, directory, authority)


def client_ssl(ca: Path, pair: KeyPair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


@pytest.fixture
def provider() -> InMemoryProvider:
    return InMemoryProvider(["node-a", "node-b"])


class StartServer(Protocol):
    async def __call__(
        self,
        *,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
        node_scope: str | None = None,
        client_ca: Path | None = None,
    ) -> str: ...


@pytest.fixture
async def servers(pki: Pki) -> AsyncIterator[list[KubeletServer]]:
    started: list[KubeletServer] = []
    yield started
    for server in started:
        await server.stop()


@pytest.fixture
def start_server(pki: Pki, servers: list[KubeletServer], provider: InMemoryProvider) -> StartServer:
    async def start(
        *,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
        node_scope: str | None = None,
        client_ca: Path | None = None,
    ) -> str:
        server = KubeletServer(
            provider,
            authenticator=authenticator or ChainAuthenticator(X509Authenticator()),
            authorizer=authorizer or AlwaysAllowAuthorizer(),
            ssl_context=server_ssl_context(pki.serving.cert, pki.serving.key, client_ca or pki.ca),
            host="127.0.0.1",
            port=0,
            node_scope=node_scope,
        )
        await server.start()
        servers.append(server)
        return f"https://127.0.0.1:{server.port}"

    return start
