"""The kubelet API over real TLS, with the in-memory provider and test authorizers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.kubelet import (
    ContainerStats,
    Decision,
    NodeAction,
    NodeStats,
    PodStats,
    UserInfo,
)
from gateway.logs import ContainerLogWriter, LogConfig, LogSource, Stream

from .conftest import Pki, StartServer, client_ssl
from .provider import InMemoryProvider, pod_json


class RecordingAuthorizer:
    """Allows what `allowed` says and records every question (a test double, not an API)."""

    def __init__(self, allowed: set[str] | None = None) -> None:
        self.allowed = allowed  # node names allowed; None = everything
        self.asked: list[tuple[str, NodeAction]] = []

    async def authorize(self, user: UserInfo, action: NodeAction) -> Decision:
        self.asked.append((user.name, action))
        ok = self.allowed is None or action.node_name in self.allowed
        return Decision(allowed=ok)


class Running:
    def __init__(self) -> None:
        self.running = True

    async def __call__(self) -> bool:
        return self.running


async def get(
    url: str, pki: Pki, *, user: str | None = "alice", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    pair = pki.client(user, ["devs"]) if user else None
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pair))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(url, headers=headers) as response,
    ):
        return response.status, await response.read()


async def write_log(directory: Path, restart: int, *lines: bytes) -> ContainerLogWriter:
    writer = ContainerLogWriter(directory, restart, LogConfig(root=directory, fsync=False))
    for line in lines:
        writer.write(Stream.STDOUT, line)
    await writer.flush()
    return writer


@pytest.fixture
async def logged_pod(provider: InMemoryProvider, tmp_path: Path) -> Running:
    """default/blinky on node-b with container `app`: restart 0 crashed, restart 1 running."""
    provider.add_pod(pod_json("default", "blinky", "node-b", "app"))
    directory = tmp_path / "default_blinky_uid" / "app"
    await (await write_log(directory, 0, b"old life\n")).close()
    await (await write_log(directory, 1, b"one\ntwo\n", b"three\n")).close()
    running = Running()
    provider.logs["default", "blinky", "app"] = LogSource(directory, 1, running)
    return running


async def test_healthz_needs_no_credentials(start_server: StartServer, pki: Pki) -> None:
    base = await start_server()
    assert await get(f"{base}/healthz", pki, user=None) == (200, b"ok")


async def test_no_credentials_is_401(start_server: StartServer, pki: Pki) -> None:
    base = await start_server()
    assert await get(f"{base}/pods", pki, user=None) == (401, b"Unauthorized")
    status, _ = await get(f"{base}/pods", pki, user=None, headers={"Authorization": "Basic x"})
    assert status == 401


async def test_untrusted_client_certificate_fails_the_handshake(
    start_server: StartServer, pki: Pki, tmp_path: Path
) -> None:
    from hil.cluster.pki import CertificateAuthority, KeyPair

    other = CertificateAuthority.create("someone-else")
    pair = other.issue_to_files(
        KeyPair(tmp_path / "m.crt", tmp_path / "m.key"), "mallory", client=True
    )
    base = await start_server()
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pair))
    async with aiohttp.ClientSession(connector=connector) as client:
        with pytest.raises(aiohttp.ClientError):
            async with client.get(f"{base}/pods") as response:
                await response.read()


async def test_pods_lists_pods_on_served_nodes(
    start_server: StartServer, pki: Pki, provider: InMemoryProvider
) -> None:
    provider.add_pod(pod_json("default", "a", "node-a", "c"))
    provider.add_pod(pod_json("default", "b", "node-b", "c"))
    provider.add_pod(pod_json("default", "elsewhere", "other-node", "c"))
    base = await start_server()
    status, body = await get(f"{base}/pods", pki)
    assert status == 200
    pod_list = json.loads(body)
    assert pod_list["kind"] == "PodList"
    assert sorted(p["metadata"]["name"] for p in pod_list["items"]) == ["a", "b"]

    scoped = await start_server(node_scope="node-b")
    _, body = await get(f"{scoped}/pods", pki)
    assert [p["metadata"]["name"] for p in json.loads(body)["items"]] == ["b"]


async def test_container_logs_with_kubelet_options(
    start_server: StartServer, pki: Pki, logged_pod: Running
) -> None:
    base = await start_server()
    url = f"{base}/containerLogs/default/blinky/app"
    assert await get(url, pki) == (200, b"one\ntwo\nthree\n")
    assert await get(f"{url}?tailLines=1", pki) == (200, b"three\n")
    assert await get(f"{url}?limitBytes=6", pki) == (200, b"one\ntw")
    assert await get(f"{url}?previous=true", pki) == (200, b"old life\n")
    status, body = await get(f"{url}?timestamps=true&tailLines=1", pki)
    assert status == 200
    stamp, _, rest = body.partition(b" ")
    assert stamp.endswith(b"Z") and rest == b"three\n"
    assert await get(f"{url}?sinceSeconds=3600", pki) == (200, b"one\ntwo\nthree\n")
    assert await get(f"{url}?sinceTime=2999-01-01T00:00:00Z", pki) == (200, b"")


async def test_container_logs_errors(
    start_server: StartServer, pki: Pki, provider: InMemoryProvider, logged_pod: Running
) -> None:
    provider.add_pod(pod_json("default", "fresh", "node-a", "app"))
    base = await start_server()
    assert await get(f"{base}/containerLogs/default/nope/app", pki) == (
        404,
        b'pod "nope" does not exist',
    )
    assert await get(f"{base}/containerLogs/default/blinky/nope", pki) == (
        404,
        b'container "nope" not found in pod "blinky"',
    )
    status, body = await get(f"{base}/containerLogs/default/fresh/app", pki)
    assert status == 400 and b"waiting to start" in body
    status, body = await get(f"{base}/containerLogs/default/blinky/app?tailLines=-3", pki)
    assert status == 400 and b"tailLines" in body
    # Restart 0 of a fresh pod has no previous instance.
    provider.logs["default", "fresh", "app"] = LogSource(Path("/nonexistent"), 0, Running())
    status, body = await get(f"{base}/containerLogs/default/fresh/app?previous=true", pki)
    assert (status, body) == (
        400,
        b'previous terminated container "app" in pod "fresh" not found',
    )


async def test_follow_streams_until_the_container_stops(
    start_server: StartServer, pki: Pki, provider: InMemoryProvider, logged_pod: Running
) -> None:
    source = provider.logs["default", "blinky", "app"]
    writer = ContainerLogWriter(source.container_dir, 1, LogConfig(root=Path("/"), fsync=False))
    base = await start_server()
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice")))
    url = f"{base}/containerLogs/default/blinky/app?follow=true&tailLines=1"
    async with aiohttp.ClientSession(connector=connector) as client, client.get(url) as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert await response.content.readline() == b"three\n"
        writer.write(Stream.STDOUT, b"four\n")
        await writer.flush()
        assert await asyncio.wait_for(response.content.readline(), 2) == b"four\n"
        writer.write(Stream.STDERR, b"last\n")
        await writer.close()
        logged_pod.running = False
        assert await asyncio.wait_for(response.content.read(), 2) == b"last\n"


async def test_stopping_the_server_ends_followers(
    start_server: StartServer,
    pki: Pki,
    servers: list[object],
    logged_pod: Running,
) -> None:
    base = await start_server()
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice")))
    url = f"{base}/containerLogs/default/blinky/app?follow=true"
    async with aiohttp.ClientSession(connector=connector) as client, client.get(url) as response:
        assert await response.content.readline() == b"one\n"
        server = servers.pop()
        stop = asyncio.create_task(server.stop(), name="stop-kubelet")  # type: ignore[attr-defined]
        await asyncio.wait_for(stop, 3)
        with contextlib.suppress(aiohttp.ClientError):
            await asyncio.wait_for(response.content.read(), 2)


async def test_authorization_uses_the_pods_node_for_logs_and_all_nodes_otherwise(
    start_server: StartServer, pki: Pki, logged_pod: Running
) -> None:
    authorizer = RecordingAuthorizer(allowed={"node-b"})
    base = await start_server(authorizer=authorizer)
    status, _ = await get(f"{base}/containerLogs/default/blinky/app", pki)
    assert status == 200
    assert authorizer.asked == [("alice", NodeAction("get", "proxy", "node-b"))]

    authorizer.asked.clear()
    status, body = await get(f"{base}/pods", pki)
    assert (status, body) == (
        403,
        b"Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)",
    )
    assert sorted(a.node_name for _, a in authorizer.asked) == ["node-a", "node-b"]

    authorizer.asked.clear()
    status, body = await get(f"{base}/stats/summary", pki)
    assert status == 403 and b"subresource=stats" in body
    status, body = await get(f"{base}/metrics/resource", pki)
    assert status == 403 and b"subresource=metrics" in body

    # Unknown pods are authorized against every node, so a 404 reveals nothing to strangers.
    status, _ = await get(f"{base}/containerLogs/default/ghost/app", pki)
    assert status == 403


async def test_stats_and_metrics(
    start_server: StartServer, pki: Pki, provider: InMemoryProvider
) -> None:
    t0 = 1_700_000_000_000_000_000
    container = ContainerStats("app", start_time_ns=t0, memory_working_set_bytes=100)
    for name in ("node-a", "node-b"):
        pod = PodStats("default", f"pod-{name}", "u", start_time_ns=t0, containers=(container,))
        provider.node_stats.append(
            NodeStats(
                name, start_time_ns=t0, sample_time_ns=t0, memory_working_set_bytes=7, pods=(pod,)
            )
        )
    base = await start_server()
    status, body = await get(f"{base}/stats/summary", pki)
    summary = json.loads(body)
    assert status == 200
    assert summary["node"]["nodeName"] == "node-a"
    assert summary["node"]["memory"]["workingSetBytes"] == 14
    assert len(summary["pods"]) == 2

    scoped = await start_server(node_scope="node-b")
    _, body = await get(f"{scoped}/stats/summary", pki)
    summary = json.loads(body)
    assert summary["node"]["nodeName"] == "node-b"
    assert summary["node"]["memory"]["workingSetBytes"] == 7
    status, body = await get(f"{scoped}/metrics/resource", pki)
    assert status == 200
    assert b'pod_memory_working_set_bytes{namespace="default",pod="pod-node-b"} 100' in body
    assert b"pod-node-a" not in body


def test_app_is_constructible_for_embedding(provider: InMemoryProvider) -> None:
    from gateway.kubelet import AlwaysAllowAuthorizer, X509Authenticator, create_app

    app = create_app(
        provider, authenticator=X509Authenticator(), authorizer=AlwaysAllowAuthorizer()
    )
    assert isinstance(app, web.Application)


class CountingRunning(Running):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.running


async def test_a_follower_ends_when_its_client_disconnects(
    start_server: StartServer, pki: Pki, provider: InMemoryProvider, logged_pod: Running
) -> None:
    source = provider.logs["default", "blinky", "app"]
    running = CountingRunning()
    provider.logs["default", "blinky", "app"] = LogSource(source.container_dir, 1, running)
    base = await start_server()
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice")))
    url = f"{base}/containerLogs/default/blinky/app?follow=true"
    async with aiohttp.ClientSession(connector=connector) as client, client.get(url) as response:
        assert await response.content.readline() == b"one\n"
        response.close()  # drop the connection mid-stream
    await asyncio.sleep(0.3)
    calls = running.calls
    await asyncio.sleep(0.3)
    assert running.calls == calls, "the follower kept polling after its client left"
