"""The HTTP/1.1 pool times out an exchange the server never answers (a real socket that accepts
and stays silent): TimeoutError, the connection closed, the pool usable again afterwards."""

from __future__ import annotations

import asyncio

import pytest

from gateway.kube.http1 import Http1Pool
from tests.gateway.fakes import until


async def test_an_unanswered_request_times_out_and_its_connection_is_closed() -> None:
    closed: list[bool] = []
    requests: list[bytes] = []

    class Silent(asyncio.Protocol):
        """Takes requests; answers only the second connection's (a healthy server again)."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.number = len(closed)
            closed.append(False)

        def data_received(self, data: bytes) -> None:
            requests.append(data)
            if self.number == 1:
                body = b"{}"
                self.transport.write(  # type: ignore[attr-defined]
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body
                )

        def connection_lost(self, exc: Exception | None) -> None:
            closed[self.number] = True

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}", None, timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/hang", {}, b"")
        await until("the timed-out connection closed", lambda: closed == [True])
        answer = await pool.request("GET", "/ok", {}, b"")  # a new connection, answered
        assert answer.status == 200 and answer.body == b"{}"
        assert pool.connections_made == 2
        assert not pool._in_flight  # nothing left to time
    finally:
        pool.close()
        server.close()
        await server.wait_closed()
