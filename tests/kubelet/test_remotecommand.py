"""exec and attach over the WebSocket channel protocol (v5.channel.k8s.io), error cases first.

The real `kubectl exec`/`kubectl attach` through the API server are in tests/e2e/test_exec.py;
these pin the wire details and the messages, over real TLS with the in-memory provider."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.kubelet import ExecOutcome
from gateway.kubelet.spdy import Data, GoAway, Ignored, Ping, SpdyFramer
from gateway.logs import ContainerLogWriter, LogConfig, LogSource, Stream

from .conftest import Pki, StartServer, client_ssl
from .provider import InMemoryProvider, ScriptedExec, pod_json

WAIT = 30.0


async def channels(
    url: str, pki: Pki, *, protocol: str = "v5.channel.k8s.io", send: list[bytes] | None = None
) -> tuple[dict[int, bytes], dict[str, Any] | None]:
    """Everything the server sent, by channel, and the final status (channel 3)."""
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice", ["devs"])))
    received: dict[int, bytes] = {}
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.ws_connect(url, protocols=(protocol,)) as ws,
    ):
        assert ws.protocol == protocol
        for payload in send or []:
            await ws.send_bytes(payload)
        async with asyncio.timeout(WAIT):
            async for message in ws:
                assert message.type is aiohttp.WSMsgType.BINARY
                channel, data = message.data[0], message.data[1:]
                received[channel] = received.get(channel, b"") + data
    status = json.loads(received.pop(3)) if 3 in received else None
    return received, status


@pytest.fixture
def device_pod(provider: InMemoryProvider) -> InMemoryProvider:
    provider.add_pod(pod_json("default", "blinky", "node-b", "app"))
    return provider


def exec_url(base: str, *command: str, **flags: str) -> str:
    query = "&".join([*(f"command={c}" for c in command), *(f"{k}={v}" for k, v in flags.items())])
    return f"{base.replace('https', 'wss')}/exec/default/blinky/app?{query}"


async def test_exec_returns_output_and_the_exit_code(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    device_pod.exec_answers["default", "blinky", "app"] = ScriptedExec(3, b"out\n", b"err\n")
    base = await start_server()
    received, status = await channels(exec_url(base, "ls", "-l", output="1", error="true"), pki)
    assert received == {1: b"out\n", 2: b"err\n"}
    assert status is not None and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert device_pod.exec_calls == [("default", "blinky", "app", ("ls", "-l"))]


async def test_exec_success_and_v4(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    device_pod.exec_answers["default", "blinky", "app"] = ScriptedExec(256, b"x" * 100_000, b"")
    base = await start_server()
    received, status = await channels(
        exec_url(base, "dump", stdout="1"), pki, protocol="v4.channel.k8s.io"
    )
    assert received == {1: b"x" * 100_000}  # split into several messages, arrives whole
    assert status == {"metadata": {}, "status": "Success"}  # 256 is 0 to a shell


async def test_exec_with_many_arguments_in_a_long_request_line(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    """Each argument is a `command=` parameter: 1500 make a 20 KB request line (aiohttp's
    default limit is 8190 bytes; the kubelet's is 1 MiB)."""
    device_pod.exec_answers["default", "blinky", "app"] = ScriptedExec(0, b"ok\n")
    base = await start_server()
    argv = ("echo", *(f"arg{n:04d}" for n in range(1500)))
    url = exec_url(base, *argv, output="1")
    assert len(url) > 20_000
    received, status = await channels(url, pki)
    assert received == {1: b"ok\n"}
    assert status == {"metadata": {}, "status": "Success"}
    assert device_pod.exec_calls == [("default", "blinky", "app", argv)]


async def test_exec_says_on_stderr_why_output_is_not_whole(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    outcome = ExecOutcome(0, truncated=True, limit_bytes=4096, missing_bytes=7)
    device_pod.exec_answers["default", "blinky", "app"] = ScriptedExec(0, b"out", b"", outcome)
    base = await start_server()
    received, status = await channels(exec_url(base, "seq", stdout="1", stderr="1"), pki)
    assert received[1] == b"out"
    notes = received[2].decode()
    assert "output was cut by the device: it could not send all of it" in notes
    assert "output was cut at 4096 bytes (kubelet.exec_output_limit_bytes)" in notes
    assert "7 bytes of output were lost" in notes
    assert status == {"metadata": {}, "status": "Success"}


@pytest.mark.parametrize(
    ("flags", "command", "expected"),
    [
        ({"tty": "1", "stdout": "1"}, ("sh",), "cannot give one"),
        ({"stdin": "1", "stdout": "1"}, ("cat",), "takes no input for exec"),
        ({"stdout": "1"}, ("tar", "cf", "-", "/etc"), "kubectl cp is not possible"),
    ],
)
async def test_exec_requests_a_device_cannot_serve_get_a_clear_error(  # noqa: PLR0917
    start_server: StartServer,
    pki: Pki,
    device_pod: InMemoryProvider,
    flags: dict[str, str],
    command: tuple[str, ...],
    expected: str,
) -> None:
    base = await start_server()
    received, status = await channels(exec_url(base, *command, **flags), pki)
    assert received == {}
    assert status is not None and status["status"] == "Failure"
    assert expected in status["message"]
    assert device_pod.exec_calls == []


async def test_exec_failure_on_the_device_is_the_error_message(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    device_pod.exec_answers["default", "blinky", "app"] = "the device of node node-b is gone"
    base = await start_server()
    _, status = await channels(exec_url(base, "uptime", stdout="1"), pki)
    assert status is not None and status["message"] == "the device of node node-b is gone"


WEBSOCKET_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol": "v5.channel.k8s.io",
}
SPDY_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "SPDY/3.1",
    "X-Stream-Protocol-Version": "v5.channel.k8s.io",
}


@pytest.mark.parametrize("upgrade", [WEBSOCKET_UPGRADE, SPDY_UPGRADE], ids=["websocket", "spdy"])
@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/exec/default/nope/app?command=ls&output=1", 404, 'pod "nope" does not exist'),
        ("/attach/default/nope/app?output=1", 404, 'pod "nope" does not exist'),
        ("/portForward/default/nope", 404, 'pod "nope" does not exist'),
        ("/exec/default/blinky/other?command=ls&output=1", 500, 'container not found ("other")'),
        (
            "/attach/default/blinky/other?output=1",
            500,
            "container other not found in pod blinky_default",
        ),
        ("/exec/default/blinky/uid-old/app?command=ls&output=1", 404, 'pod "blinky" not found'),
        ("/attach/default/blinky/uid-old/app?output=1", 404, 'pod "blinky" not found'),
        ("/portForward/default/blinky/uid-old", 404, 'pod "blinky" not found'),
        # No stream asked for: the kubelet's 400, checked after the pod, before the container.
        ("/exec/default/blinky/app?command=ls", 400, "at least 1 of stdin, stdout, stderr"),
        ("/attach/default/blinky/other", 400, "at least 1 of stdin, stdout, stderr"),
        ("/exec/default/nope/app?command=ls", 404, 'pod "nope" does not exist'),
    ],
)
async def test_an_unknown_pod_or_container_is_answered_before_any_upgrade(  # noqa: PLR0917
    start_server: StartServer,
    pki: Pki,
    device_pod: InMemoryProvider,
    upgrade: dict[str, str],
    path: str,
    status: int,
    text: str,
) -> None:
    """As the kubelet: plain HTTP, no 101 (kubectl: `unable to upgrade connection: <text>`)."""
    base = await start_server()
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice", ["devs"])))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.post(f"{base}{path}", headers=upgrade) as response,
    ):
        assert response.status == status
        assert text in await response.text()
        assert "Upgrade" not in response.headers
        assert response.content_type == "text/plain"
    assert device_pod.exec_calls == []


async def test_non_upgrades_and_port_forward_are_refused_with_the_reason(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    base = await start_server()
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice", ["devs"])))
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.post(f"{base}/exec/default/blinky/app?command=ls&output=1") as response:
            assert response.status == 400
            assert "need a streaming connection" in (await response.json())["message"]
        spdy = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
        async with client.post(
            f"{base}/exec/default/blinky/app?command=ls&output=1", headers=spdy
        ) as response:
            assert response.status == 400
            assert "no supported stream protocol" in (await response.json())["message"]
        async with client.post(f"{base}/portForward/default/blinky", headers=spdy) as response:
            assert response.status == 400
            status = await response.json()
            assert "a device task has no network socket" in status["message"]


async def test_exec_over_spdy(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider
) -> None:
    """The SPDY/3.1 side as an API server without ExtendWebSocketsToKubelet speaks it."""
    device_pod.exec_answers["default", "blinky", "app"] = ScriptedExec(2, b"out\n", b"err\n")
    port = int((await start_server()).rsplit(":", 1)[1])
    context = client_ssl(pki.ca, pki.client("alice", ["devs"]))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(
        b"POST /exec/default/blinky/app?command=ls&output=1&error=1 HTTP/1.1\r\n"
        b"Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
    client = SpdyFramer()
    for stream_id, kind in ((1, "error"), (3, "stdout"), (5, "stderr")):
        writer.write(client.syn_stream(stream_id, {"streamType": kind}))
    writer.write(client.ping(7))
    received: dict[int, bytes] = {}
    replies, pongs, finished, goaway = set(), [], set(), False
    async with asyncio.timeout(WAIT):
        while not goaway:
            chunk = await reader.read(65536)
            if not chunk:
                break
            for frame in client.receive(chunk):
                if isinstance(frame, Ignored) and frame.frame_type == 2:
                    replies.add(frame.frame_type)
                elif isinstance(frame, Ping):
                    pongs.append(frame.ping_id)
                elif isinstance(frame, Data):
                    received[frame.stream_id] = received.get(frame.stream_id, b"") + frame.data
                    if frame.fin:
                        finished.add(frame.stream_id)
                elif isinstance(frame, GoAway):
                    goaway = True
    writer.close()
    assert replies and pongs == [7] and goaway
    assert received[3] == b"out\n" and received[5] == b"err\n"
    status = json.loads(received[1])
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
    assert finished == {1, 3, 5}


async def test_attach_streams_output_from_now_until_the_container_stops(
    start_server: StartServer, pki: Pki, device_pod: InMemoryProvider, tmp_path: Path
) -> None:
    directory = tmp_path / "default_blinky_uid" / "app"
    writer = ContainerLogWriter(directory, 0, LogConfig(root=directory, fsync=False))
    writer.write(Stream.STDOUT, b"before attach\n")
    await writer.flush()
    running = True

    async def is_running() -> bool:
        return running

    device_pod.logs["default", "blinky", "app"] = LogSource(directory, 0, is_running)
    base = await start_server()
    url = f"{base.replace('https', 'wss')}/attach/default/blinky/app?stdout=1&stderr=1"
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki.ca, pki.client("alice", ["devs"])))
    stdout = b""
    status = None
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws,
    ):

        async def tick() -> None:
            # Lines keep coming until the client has seen one (no guess at when the server
            # is following), then the device "exits".
            nonlocal running
            n = 0
            while not stdout:
                writer.write(Stream.STDOUT, f"tick {n}\n".encode())
                await writer.flush()
                n += 1
                await asyncio.sleep(0.05)
            running = False

        ticker = asyncio.ensure_future(tick())
        async with asyncio.timeout(WAIT):
            async for message in ws:
                if message.data[0] == 1:
                    stdout += message.data[1:]
                elif message.data[0] == 3:
                    status = json.loads(message.data[1:])
        await ticker
    await writer.close()
    assert status == {"metadata": {}, "status": "Success"}
    assert b"before attach" not in stdout
    assert stdout.startswith(b"tick ")
