"""One kubelet endpoint per node, /runningpods, and the limits that protect the listeners.

Over real TLS with the in-memory provider (the runtime side is exercised in tests/e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.kubelet import (
    AlwaysAllowAuthorizer,
    ChainAuthenticator,
    KubeletServer,
    NodeStats,
    NoFreePort,
    PortRange,
    ServerLimits,
    X509Authenticator,
    server_ssl_context,
)
from gateway.kubelet.head_limit import HEAD_LIMIT

from .conftest import Pki, client_ssl
from .provider import InMemoryProvider, pod_json

WAIT = 30.0  # only reached when broken


@pytest.fixture
async def make_server(pki: Pki, provider: InMemoryProvider) -> AsyncIterator[Callable[..., object]]:
    started: list[KubeletServer] = []

    async def make(
        node_ports: PortRange | None = None, limits: ServerLimits | None = None
    ) -> KubeletServer:
        server = KubeletServer(
            provider,
            authenticator=ChainAuthenticator(X509Authenticator()),
            authorizer=AlwaysAllowAuthorizer(),
            ssl_context=server_ssl_context(pki.serving.cert, pki.serving.key, pki.ca),
            host="127.0.0.1",
            port=0,
            node_ports=node_ports or PortRange(0, 0),
            limits=limits or ServerLimits(),
        )
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


async def get_json(port: int, path: str, pki: Pki) -> tuple[int, object]:
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice", ["devs"])))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"https://127.0.0.1:{port}{path}") as response,
    ):
        body = await response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body.decode()


def two_nodes_with_pods(provider: InMemoryProvider) -> None:
    provider.add_pod(pod_json("default", "on-a", "node-a", "app"))
    provider.add_pod(pod_json("default", "on-b", "node-b", "app"))
    stopped = pod_json("default", "done-b", "node-b", "app")
    stopped["status"]["phase"] = "Succeeded"
    provider.add_pod(stopped)
    provider.node_stats = [
        NodeStats("node-a", 1, 2, memory_working_set_bytes=5),
        NodeStats("node-b", 1, 2, memory_working_set_bytes=7),
    ]


async def test_each_node_port_answers_for_exactly_that_node(
    make_server: Callable[..., object], pki: Pki, provider: InMemoryProvider
) -> None:
    two_nodes_with_pods(provider)
    server: KubeletServer = await make_server()  # type: ignore[misc]
    port_a, port_b = server.open_node("node-a"), server.open_node("node-b")
    assert len({port_a, port_b, server.port}) == 3
    assert server.open_node("node-a") == port_a  # stable for the node's lifetime

    _, pods = await get_json(port_b, "/pods", pki)
    assert [p["metadata"]["name"] for p in pods["items"]] == ["on-b", "done-b"]  # type: ignore[index]
    _, summary = await get_json(port_b, "/stats/summary", pki)
    assert summary["node"]["nodeName"] == "node-b"  # type: ignore[index]
    assert summary["node"]["memory"]["workingSetBytes"] == 7  # type: ignore[index]
    _, summary = await get_json(port_a, "/stats/summary", pki)
    assert summary["node"]["nodeName"] == "node-a"  # type: ignore[index]
    status, _ = await get_json(port_a, "/containerLogs/default/on-b/app", pki)
    assert status == 404, "a pod of another node is not this node's"

    _, configz = await get_json(port_b, "/configz", pki)
    assert configz["kubeletconfig"]["port"] == port_b  # type: ignore[index]

    # The gateway's own listener answers for every node.
    _, pods = await get_json(server.port, "/pods", pki)
    assert len(pods["items"]) == 3  # type: ignore[index]


async def test_runningpods_lists_running_pods_of_the_node_with_and_without_slash(
    make_server: Callable[..., object], pki: Pki, provider: InMemoryProvider
) -> None:
    two_nodes_with_pods(provider)
    server: KubeletServer = await make_server()  # type: ignore[misc]
    port_b = server.open_node("node-b")
    for path in ("/runningpods", "/runningpods/"):
        status, listing = await get_json(port_b, path, pki)
        assert status == 200
        assert listing["kind"] == "PodList"  # type: ignore[index]
        items = listing["items"]  # type: ignore[index]
        assert [p["metadata"] for p in items] == [
            {"name": "on-b", "namespace": "default", "uid": "uid-on-b"}
        ]
        assert items[0]["spec"] == {"containers": [{"name": "app", "image": "app"}]}


async def test_healthz_of_a_node_port_is_that_nodes_health(
    make_server: Callable[..., object], pki: Pki, provider: InMemoryProvider
) -> None:
    server: KubeletServer = await make_server()  # type: ignore[misc]
    port_a, port_b = server.open_node("node-a"), server.open_node("node-b")
    provider.problems["node-b"] = "the device of node node-b is not connected"
    assert await get_json(port_a, "/healthz", pki) == (200, "ok")
    assert await get_json(port_b, "/healthz", pki) == (
        503,
        "unhealthy: the device of node node-b is not connected",
    )
    assert await get_json(server.port, "/healthz", pki) == (200, "ok")  # the gateway is up


async def test_logs_lists_and_serves_only_that_nodes_log_files(
    make_server: Callable[..., object], pki: Pki, provider: InMemoryProvider, tmp_path: Path
) -> None:
    firmware = tmp_path / "firmware.log"
    firmware.write_text("2026-12-02T00:00:00.000000000Z WARNING heap low\n")
    provider.node_logs["node-a"] = [firmware]
    server: KubeletServer = await make_server()  # type: ignore[misc]
    port_a, port_b = server.open_node("node-a"), server.open_node("node-b")
    assert await get_json(port_a, "/logs/", pki) == (
        200,
        '<pre>\n<a href="firmware.log">firmware.log</a>\n</pre>\n',
    )
    assert await get_json(port_a, "/logs/firmware.log", pki) == (200, firmware.read_text())
    assert await get_json(port_b, "/logs/", pki) == (200, "<pre>\n</pre>\n")
    status, text = await get_json(port_b, "/logs/firmware.log", pki)
    assert status == 404 and "no log 'firmware.log' on this node" in str(text)
    status, text = await get_json(port_a, "/logs/..%2Fconftest.py", pki)
    assert status == 404
    status, text = await get_json(server.port, "/logs/", pki)  # the gateway's own port
    assert status == 404 and "each node's own port" in str(text)


async def test_closed_node_port_stops_listening(
    make_server: Callable[..., object], pki: Pki, provider: InMemoryProvider
) -> None:
    server: KubeletServer = await make_server()  # type: ignore[misc]
    port = server.open_node("node-a")
    status, _ = await get_json(port, "/healthz", pki)
    assert status == 200
    await server.close_node("node-a")
    assert server.node_port("node-a") is None
    with pytest.raises(aiohttp.ClientConnectionError):
        await get_json(port, "/healthz", pki)


def _free_ports(count: int) -> list[int]:
    """`count` consecutive free ports (probe-and-release: fine on a test host)."""
    for base in range(42000, 60000, count + 1):
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return list(range(base, base + count))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free ports")


async def test_ports_come_from_the_range_skip_ports_in_use_and_run_out_clearly(
    make_server: Callable[..., object], provider: InMemoryProvider
) -> None:
    first, middle, last = _free_ports(3)
    ports = PortRange(first, last)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", middle))
    squatter.listen(1)
    try:
        server: KubeletServer = await make_server(node_ports=ports)  # type: ignore[misc]
        got = {server.open_node("node-a"), server.open_node("node-b")}
        assert got == {first, last}  # `middle` is another program's
        with pytest.raises(NoFreePort, match=rf"{first}-{last}.*kubelet.node_ports"):
            server.open_node("node-c")
    finally:
        squatter.close()


async def test_a_node_gets_the_same_port_after_a_restart_whatever_the_order(
    make_server: Callable[..., object],
) -> None:
    ports = PortRange(*_free_ports(50)[::49])
    # Names whose preferred ports (crc32 of the name, modulo the range) differ: a collision is
    # resolved in arrival order, the one case where a node may move.
    names: list[str] = []
    slots: set[int] = set()
    for i in range(100):
        slot = zlib.crc32(f"node-{i}".encode()) % 50
        if slot not in slots and len(names) < 5:
            names.append(f"node-{i}")
            slots.add(slot)
    first: KubeletServer = await make_server(node_ports=ports)  # type: ignore[misc]
    before = {name: first.open_node(name) for name in names}
    await first.stop()
    second: KubeletServer = await make_server(node_ports=ports)  # type: ignore[misc]
    after = {name: second.open_node(name) for name in reversed(names)}
    assert after == before


async def _tls_connection(port: int, pki: Pki) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = client_ssl(pki.ca, pki.client("alice", ["devs"]))
    return await asyncio.open_connection("127.0.0.1", port, ssl=context)


async def test_a_slow_header_sender_is_disconnected(
    make_server: Callable[..., object], pki: Pki
) -> None:
    server: KubeletServer = await make_server(limits=ServerLimits(idle_timeout_s=0.3))  # type: ignore[misc]
    reader, writer = await _tls_connection(server.port, pki)

    async def trickle() -> None:
        # One header byte at a time, never finishing: must not keep the connection alive.
        for byte in b"GET /pods HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)

    sender = asyncio.ensure_future(trickle())
    try:
        data = await asyncio.wait_for(reader.read(), WAIT)  # EOF once the server hangs up
    finally:
        sender.cancel()
        with pytest.raises((asyncio.CancelledError, ConnectionError, ssl.SSLError)):
            await sender
        writer.close()
    assert data == b""


async def test_connections_beyond_the_limit_get_503(
    make_server: Callable[..., object], pki: Pki
) -> None:
    server: KubeletServer = await make_server(limits=ServerLimits(max_connections=2))  # type: ignore[misc]
    kept = []
    for _ in range(2):
        reader, writer = await _tls_connection(server.port, pki)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        kept.append(writer)
    reader, writer = await _tls_connection(server.port, pki)
    answer = await asyncio.wait_for(reader.read(), WAIT)
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"too many connections" in answer
    for w in [*kept, writer]:
        w.close()

    async def served_again() -> None:  # once the server has seen the hang-ups
        for _ in range(1000):
            if (await get_json(server.port, "/healthz", pki))[0] == 200:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(served_again(), WAIT)


async def _raw_exchange(port: int, pki: Pki, request: bytes) -> bytes:
    """Sends `request` (written while the answer is read: the server may answer before the
    end) and returns everything until the server hangs up or WAIT passes."""
    reader, writer = await _tls_connection(port, pki)

    async def send() -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            writer.write(request)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    received = b""
    try:
        async with asyncio.timeout(WAIT):
            while chunk := await reader.read(65536):
                received += chunk
    except (ConnectionError, ssl.SSLError):
        pass  # a reset after the answer: the answer is what counts
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
    return received


async def test_a_long_request_line_is_served_as_by_the_kubelet(
    make_server: Callable[..., object], pki: Pki, provider: InMemoryProvider
) -> None:
    """aiohttp alone refuses lines over 8190 bytes; the kubelet (Go) reads up to 1 MiB."""
    provider.add_pod(pod_json("default", "blinky", "node-b", "app"))
    server: KubeletServer = await make_server()  # type: ignore[misc]
    padding = "x" * 20_000
    status, body = await get_json(server.port, f"/pods?pad={padding}", pki)
    assert status == 200
    assert isinstance(body, dict) and len(body["items"]) == 1
    big_header = b"X-Big: " + b"y" * 20_000 + b"\r\n"
    answer = await _raw_exchange(
        server.port,
        pki,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big_header + b"Connection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            b"GET /pods?pad=" + b"x" * HEAD_LIMIT + b" HTTP/1.1\r\nHost: x\r\n", id="line"
        ),
        pytest.param(b"GET /pods HTTP/1.1\r\nX-Big: " + b"y" * HEAD_LIMIT + b"\r\n", id="field"),
        pytest.param(  # each line is allowed, the head as a whole is not (Go's rule)
            b"GET /pods HTTP/1.1\r\n"
            + b"".join(b"X-Part-%d: %s\r\n" % (n, b"z" * 300_000) for n in range(4)),
            id="total",
        ),
    ],
)
async def test_a_request_head_over_the_kubelets_limit_gets_431_and_serving_goes_on(
    make_server: Callable[..., object], pki: Pki, head: bytes
) -> None:
    server: KubeletServer = await make_server()  # type: ignore[misc]
    answer = await _raw_exchange(server.port, pki, head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"exceed 1048576 bytes (the kubelet's limit)" in answer
    assert (await get_json(server.port, "/healthz", pki)) == (200, "ok")


async def test_an_oversized_head_after_a_pipelined_request_is_answered_in_order(
    make_server: Callable[..., object], pki: Pki
) -> None:
    server: KubeletServer = await make_server()  # type: ignore[misc]
    answer = await _raw_exchange(
        server.port,
        pki,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /pods?pad="
        + b"x" * (HEAD_LIMIT + 10)
        + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    first, _, rest = answer.partition(b"\r\n\r\nok")
    assert first.startswith(b"HTTP/1.1 200")
    # aiohttp's own answer to a line over its limit (HTTP/1.0: it has no request version)
    assert rest.split(b"\r\n")[0].endswith(b" 431 Request Header Fields Too Large")
    assert b"the kubelet's limit" in rest
