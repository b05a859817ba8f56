"""The kubelet API against the real local control plane: TokenReview, SubjectAccessReview,
and the API server itself calling us for `kubectl logs`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from gateway.kubelet import (
    ChainAuthenticator,
    KubeletServer,
    SubjectAccessReviewAuthorizer,
    TokenReviewAuthenticator,
    X509Authenticator,
    server_ssl_context,
)
from gateway.logs import ContainerLogWriter, LogConfig, LogSource, Stream
from hil.cluster.local import LocalCluster
from hil.cluster.pki import KeyPair

from .conftest import client_ssl
from .provider import InMemoryProvider, pod_json

pytestmark = pytest.mark.integration

NODES = ["wirelet-it-a", "wirelet-it-b"]


@pytest.fixture
async def admin(cluster: LocalCluster) -> AsyncIterator[client.ApiClient]:
    conf = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=conf)
    async with client.ApiClient(conf) as api:
        yield api


@pytest.fixture
async def gateway(
    cluster: LocalCluster, admin: client.ApiClient, tmp_path: Path
) -> AsyncIterator[tuple[str, InMemoryProvider]]:
    """A kubelet API authenticating and authorizing through the real API server."""
    cert, key = cluster.sign_serving_cert(["127.0.0.1", "localhost"], tmp_path)
    provider = InMemoryProvider(NODES)
    server = KubeletServer(
        provider,
        authenticator=ChainAuthenticator(X509Authenticator(), TokenReviewAuthenticator(admin)),
        authorizer=SubjectAccessReviewAuthorizer(admin),
        ssl_context=server_ssl_context(cert, key, cluster.ca_cert),
        host="127.0.0.1",
        port=0,
    )
    await server.start()
    try:
        yield f"https://127.0.0.1:{server.port}", provider
    finally:
        await server.stop()


async def fetch(
    url: str, ca: Path, *, cert: KeyPair | None = None, token: str | None = None
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(ssl=client_ssl(ca, cert))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_no_credentials_is_401(cluster: LocalCluster, gateway: tuple[str, object]) -> None:
    base, _ = gateway
    assert await fetch(f"{base}/pods", cluster.ca_cert) == (401, "Unauthorized")
    status, _ = await fetch(f"{base}/pods", cluster.ca_cert, token="not-a-real-token")
    assert status == 401


async def test_client_cert_without_rbac_is_403(
    cluster: LocalCluster, gateway: tuple[str, object], tmp_path: Path
) -> None:
    base, _ = gateway
    cert, key = cluster.sign_client_cert("nobody-special", ["nobodies"], tmp_path)
    status, text = await fetch(f"{base}/pods", cluster.ca_cert, cert=KeyPair(cert, key))
    assert (status, text) == (
        403,
        "Forbidden (user=nobody-special, verb=get, resource=nodes, subresource=proxy)",
    )


async def test_apiserver_kubelet_client_cert_is_allowed(
    cluster: LocalCluster, gateway: tuple[str, object]
) -> None:
    base, _ = gateway
    pki = cluster.pki_dir
    apiserver = KeyPair(pki / "kubelet-client.crt", pki / "kubelet-client.key")
    status, text = await fetch(f"{base}/pods", cluster.ca_cert, cert=apiserver)
    assert status == 200, text
    status, _ = await fetch(f"{base}/stats/summary", cluster.ca_cert, cert=apiserver)
    assert status == 200


async def test_service_account_token_with_node_proxy_rights(
    cluster: LocalCluster, gateway: tuple[str, object], admin: client.ApiClient
) -> None:
    base, _ = gateway
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    suffix = uuid.uuid4().hex[:8]
    namespace = f"kubelet-it-{suffix}"
    role = f"wirelet-node-proxy-{suffix}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        for name in ("reader", "stranger"):
            await core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        # Nodes are cluster-scoped, so only a ClusterRole can grant nodes/proxy.
        await rbac.create_cluster_role(
            client.V1ClusterRole(
                metadata=client.V1ObjectMeta(name=role),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[""],
                        resources=["nodes/proxy"],
                        resource_names=NODES,
                        verbs=["get"],
                    )
                ],
            )
        )
        await rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=role),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            )
        )
        reader = await _token(core, namespace, "reader")
        stranger = await _token(core, namespace, "stranger")

        status, text = await fetch(f"{base}/pods", cluster.ca_cert, token=reader)
        assert status == 200, text
        # nodes/proxy does not include nodes/stats.
        status, text = await fetch(f"{base}/stats/summary", cluster.ca_cert, token=reader)
        assert status == 403 and "subresource=stats" in text
        status, text = await fetch(f"{base}/pods", cluster.ca_cert, token=stranger)
        assert (status, text) == (
            403,
            f"Forbidden (user=system:serviceaccount:{namespace}:stranger, verb=get, "
            "resource=nodes, subresource=proxy)",
        )
    finally:
        await rbac.delete_cluster_role_binding(role)
        await rbac.delete_cluster_role(role)
        await core.delete_namespace(namespace)


async def _token(core: client.CoreV1Api, namespace: str, account: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = await core.create_namespaced_service_account_token(account, namespace, request)
    return str(response.status.token)


async def test_kubectl_logs_path_through_the_apiserver(
    cluster: LocalCluster,
    gateway: tuple[str, InMemoryProvider],
    admin: client.ApiClient,
    tmp_path: Path,
) -> None:
    """The API server proxies pods/log to the node's kubelet endpoint, i.e. to us."""
    base, provider = gateway
    port = int(base.rsplit(":", 1)[1])
    core = client.CoreV1Api(admin)
    node = f"wirelet-it-logs-{uuid.uuid4().hex[:8]}"
    provider.nodes.append(node)
    await core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=node)))
    pod_name = f"blinky-{uuid.uuid4().hex[:8]}"
    try:
        await core.patch_node_status(
            node,
            {
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                }
            },
        )
        await _wait_for_default_service_account(core)
        await core.create_namespaced_pod(
            "default",
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=pod_name),
                spec=client.V1PodSpec(
                    node_name=node, containers=[client.V1Container(name="app", image="app")]
                ),
            ),
        )
        provider.add_pod(pod_json("default", pod_name, node, "app"))

        directory = tmp_path / "logs" / "app"
        writer = ContainerLogWriter(directory, 0, LogConfig(root=tmp_path, fsync=False))
        writer.write(Stream.STDOUT, b"hello from the device\nsecond line\n")
        await writer.flush()
        running = asyncio.Event()

        async def is_running() -> bool:
            return running.is_set()

        provider.logs["default", pod_name, "app"] = LogSource(directory, 0, is_running)
        text = await core.read_namespaced_pod_log(pod_name, "default", container="app")
        assert text == "hello from the device\nsecond line\n"
        text = await core.read_namespaced_pod_log(pod_name, "default", tail_lines=1)
        assert text == "second line\n"

        # kubectl logs -f: the API server streams our chunked response through.
        running.set()
        response: aiohttp.ClientResponse = await core.read_namespaced_pod_log(  # type: ignore[assignment]
            pod_name, "default", follow=True, tail_lines=0, _preload_content=False
        )
        async with response:
            writer.write(Stream.STDOUT, b"live line\n")
            await writer.flush()
            line = await asyncio.wait_for(response.content.readline(), 5)
            assert line == b"live line\n"
            writer.write(Stream.STDERR, b"exiting\n")
            await writer.close()
            running.clear()
            assert await asyncio.wait_for(response.content.read(), 5) == b"exiting\n"
    finally:
        await core.delete_namespaced_pod(pod_name, "default", grace_period_seconds=0)
        await core.delete_node(node)


async def _wait_for_default_service_account(core: client.CoreV1Api) -> None:
    for _ in range(240):
        accounts = await core.list_namespaced_service_account("default")
        if any(sa.metadata.name == "default" for sa in accounts.items):
            return
        await asyncio.sleep(0.25)
    pytest.fail("controller-manager never created the default ServiceAccount")
