"""The gateway's lean HTTP/1.1 client (gateway.kube.http1 under KubeApi) against the real API
server: keep-alive, answers of every framing, errors, a connection the server closed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import uvloop

from gateway.kube.api import KubeApi, KubeApiError, load_configuration
from hil.cluster.local import LocalCluster

pytestmark = pytest.mark.integration


async def _api(cluster: LocalCluster) -> KubeApi:
    return KubeApi(await load_configuration(str(cluster.kubeconfig)), qps=1000.0, burst=1000)


async def test_requests_share_one_kept_alive_connection(cluster: LocalCluster) -> None:
    async with await _api(cluster) as api:
        name = f"http1-{uuid.uuid4().hex[:6]}"
        path = f"/api/v1/namespaces/default/configmaps/{name}"
        await api.create("/api/v1/namespaces/default/configmaps", {"metadata": {"name": name}})
        for n in range(20):
            patched = await api.patch(path, {"data": {"n": str(n)}}, kind="merge")
            assert patched["data"] == {"n": str(n)}
        assert (await api.get(path))["data"] == {"n": "19"}
        await api.delete(path)
        assert api._http().connections_made == 1


async def test_large_and_concurrent_answers_arrive_whole(cluster: LocalCluster) -> None:
    """A large answer (the API server streams it chunked) and many at once on a few
    connections: every body is whole JSON."""
    async with await _api(cluster) as api:
        bodies = await asyncio.gather(*(api.get("/openapi/v2") for _ in range(4)))
        assert all(body["swagger"] == "2.0" and body["paths"] for body in bodies)
        listings = await asyncio.gather(*(api.get("/api/v1/namespaces") for _ in range(30)))
        assert all(listing["kind"] == "NamespaceList" for listing in listings)
        assert api._http().connections_made <= 30


async def test_error_answers_raise_with_the_servers_reason(cluster: LocalCluster) -> None:
    async with await _api(cluster) as api:
        with pytest.raises(KubeApiError) as missing:
            await api.get("/api/v1/namespaces/default/configmaps/no-such-map")
        assert missing.value.not_found
        assert "not found" in str(missing.value)
        with pytest.raises(KubeApiError) as invalid:
            await api.create("/api/v1/namespaces/default/configmaps", {"metadata": {}})
        assert invalid.value.permanent
        # The connection stays usable after error answers.
        assert (await api.get("/api/v1/namespaces/default"))["metadata"]["name"] == "default"
        assert api._http().connections_made == 1


async def test_a_connection_closed_while_idle_is_replaced_without_an_error(
    cluster: LocalCluster,
) -> None:
    """A kept-alive connection that dies while idle (the server's idle timeout, a restart):
    the next request goes on a new connection and succeeds, and no retry is counted."""
    async with await _api(cluster) as api:
        await api.get("/api/v1/namespaces/default")
        pool = api._http()
        (idle,) = pool._idle
        assert idle.transport is not None
        idle.transport.abort()
        await asyncio.sleep(0)
        assert (await api.get("/api/v1/namespaces/default"))["metadata"]["name"] == "default"
        assert pool.connections_made == 2
        assert api.retries == 0


def test_requests_work_on_uvloop_as_the_gateway_runs(cluster: LocalCluster) -> None:
    """The gateway runs on uvloop, whose TLS transport is its own class."""

    async def round_trip() -> tuple[str, int]:
        async with await _api(cluster) as api:
            await api.get("/api/v1/namespaces/default")
            namespace = await api.get("/api/v1/namespaces/default")
            return namespace["metadata"]["name"], api._http().connections_made

    assert uvloop.run(round_trip()) == ("default", 1)
