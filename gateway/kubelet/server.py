"""The kubelet API server: one HTTPS listener per node, plus the gateway's own listener.

The API server reaches a node's kubelet at the node's address and
`status.daemonEndpoints.kubeletEndpoint.port` and never says which node it means, so each node
gets its own port (`open_node`): a request arriving there is answered for exactly that node.
The gateway's own listener (`port`) answers for every node it serves (operators, debugging).

server = KubeletServer(provider, authenticator=..., authorizer=..., ssl_context=...,
                       host="0.0.0.0", port=10250, node_ports=PortRange(10251, 12250))
await server.start()
port = server.open_node("dev-0001")      # bound at once; advertised in the node's status
...
await server.stop()   # ends log followers and exec streams promptly, then closes connections
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.kubelet.authn import Authenticator
from gateway.kubelet.authz import Authorizer
from gateway.kubelet.errors import NoFreePort
from gateway.kubelet.handlers import KubeletHandlers
from gateway.kubelet.head_limit import HANDLER_ARGS, HeadLimitedHandler, head_budget
from gateway.kubelet.middleware import auth_middleware
from gateway.kubelet.provider import KubeletProvider
from gateway.tasks import TaskSet

logger = logging.getLogger(__name__)

DEFAULT_PORT = 10250
# Followers notice shutdown within one log poll interval; this bounds the wait for the rest.
SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class PortRange:
    """Ports handed to nodes, first..last inclusive; first == 0 means "any free port"."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return 0 if self.first == 0 else self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Protection against clients that hold connections without using them.

    `idle_timeout_s`: a connection must deliver a complete request header within this time of
    its TLS handshake or of its previous response, else it is closed (slow header senders,
    idle keep-alives). `handshake_timeout_s` bounds the TLS handshake itself.
    `max_connections`: established connections over all listeners; more are answered 503
    and closed. Streams in progress (log follow, exec) are never cut by these timers.
    """

    idle_timeout_s: float = 30.0
    handshake_timeout_s: float = 10.0
    max_connections: int = 1000


class _Stopping:
    def __init__(self) -> None:
        self.stopping = False

    def __call__(self) -> bool:
        return self.stopping


def create_app(
    provider: KubeletProvider,
    *,
    authenticator: Authenticator,
    authorizer: Authorizer,
    node_scope: str | None = None,
) -> web.Application:
    """The aiohttp application, for embedding or for aiohttp's test server."""
    app, _ = _create_app(
        provider, authenticator=authenticator, authorizer=authorizer, node_scope=node_scope
    )
    return app


def _create_app(
    provider: KubeletProvider,
    *,
    authenticator: Authenticator,
    authorizer: Authorizer,
    node_scope: str | None,
    configz: dict[str, Any] | None = None,
) -> tuple[web.Application, KubeletHandlers]:
    stopping = _Stopping()
    handlers = KubeletHandlers(provider, node_scope=node_scope, stopping=stopping, configz=configz)
    app = web.Application(
        middlewares=[
            head_budget,
            auth_middleware(authenticator, authorizer, handlers.nodes_concerned),
        ]
    )
    handlers.register(app)

    async def end_streams(_: web.Application) -> None:
        stopping.stopping = True

    app.on_shutdown.append(end_streams)
    return app, handlers


class _Refuse(asyncio.Protocol):
    """Answers 503 and hangs up: the connection limit is reached."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        body = b"too many connections to the kubelet API; try again later\n"
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        transport.close()


class KubeletServer:
    def __init__(
        self,
        provider: KubeletProvider,
        *,
        authenticator: Authenticator,
        authorizer: Authorizer,
        ssl_context: ssl.SSLContext,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        node_scope: str | None = None,
        node_ports: PortRange = PortRange(0, 0),
        limits: ServerLimits = ServerLimits(),
        configz: dict[str, Any] | None = None,
    ) -> None:
        """`configz`: KubeletConfiguration fields for /configz (log sizes, lease duration...)."""
        self._app, self._handlers = _create_app(
            provider,
            authenticator=authenticator,
            authorizer=authorizer,
            node_scope=node_scope,
            configz=configz,
        )
        self._ssl_context = ssl_context
        self._host = host
        self._port = port
        self._node_ports = node_ports
        self._limits = limits
        self._runner: web.AppRunner | None = None
        self._servers: dict[int, asyncio.Server] = {}  # local port -> listener
        self._unserved: dict[int, socket.socket] = {}  # bound, listener not created yet
        self._starting = TaskSet("kubelet API")  # node listeners being opened
        self._main_port = 0
        self._port_of: dict[str, int] = {}  # node name -> its own port

    @property
    def port(self) -> int:
        """The gateway's own listener's port (useful when constructed with port 0)."""
        return self._main_port or self._port

    def node_port(self, node: str) -> int | None:
        return self._port_of.get(node)

    def _handler_args(self) -> dict[str, Any]:
        """What each connection's HTTP protocol is made with."""
        return {
            "access_log": None,
            "keepalive_timeout": self._limits.idle_timeout_s,
            **HANDLER_ARGS,
        }

    async def start(self) -> None:
        runner = web.AppRunner(self._app, shutdown_timeout=SHUTDOWN_TIMEOUT, **self._handler_args())
        await runner.setup()
        self._runner = runner
        try:
            sock = _bind(self._host, self._port)
            self._main_port = sock.getsockname()[1]
            await self._serve(sock)
        except BaseException:
            await runner.cleanup()
            self._runner = None
            raise
        logger.info("kubelet API listening on https://%s:%d", self._host, self.port)

    def open_node(self, node: str) -> int:
        """The node's own port, bound now (the same one if already open); serving starts at once.

        Raises NoFreePort when every port of the range is taken."""
        known = self._port_of.get(node)
        if known is not None:
            return known
        if self._runner is None:
            raise RuntimeError("kubelet API not started")
        sock = self._bind_node_port(node)
        port = int(sock.getsockname()[1])
        self._port_of[node] = port
        self._handlers.scopes[port] = node
        self._unserved[port] = sock
        self._starting.spawn(self._serve(sock), f"listen for {node}")
        logger.debug("kubelet API for node %s on port %d", node, port)
        return port

    async def close_node(self, node: str) -> None:
        port = self._port_of.pop(node, None)
        if port is None:
            return
        self._handlers.scopes.pop(port, None)
        server = self._servers.pop(port, None)
        if server is not None:
            server.close()
        sock = self._unserved.pop(port, None)
        if sock is not None:
            sock.close()

    def _bind_node_port(self, node: str) -> socket.socket:
        """The node's preferred port (from a hash of its name, so it keeps its port across
        gateway restarts and a stale endpoint in the API server is rarely another node's), or
        the next free one after it."""
        ports = self._node_ports
        if ports.first == 0:
            return _bind(self._host, 0)
        taken = set(self._port_of.values())
        preferred = zlib.crc32(node.encode()) % ports.size
        for step in range(ports.size):
            candidate = ports.first + (preferred + step) % ports.size
            if candidate in taken:
                continue
            try:
                return _bind(self._host, candidate)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                logger.warning("kubelet port %d is in use by another program; skipping", candidate)
        raise NoFreePort(
            f"no free kubelet port for node {node}: all {ports.size} ports of "
            f"{ports.first}-{ports.last} are taken (widen kubelet.node_ports)"
        )

    async def _serve(self, sock: socket.socket) -> None:
        assert self._runner is not None and self._runner.server is not None
        handler_factory = self._runner.server
        limit = self._limits.max_connections
        loop = asyncio.get_running_loop()
        handler_args = self._handler_args()

        def protocol() -> asyncio.BaseProtocol:
            if len(handler_factory.connections) >= limit:
                logger.warning("kubelet API: %d connections open; refusing another", limit)
                return _Refuse()
            # What handler_factory() makes, with the kubelet's request head limit.
            return HeadLimitedHandler(handler_factory, loop=loop, **handler_args)

        port = int(sock.getsockname()[1])
        if self._unserved.pop(port, None) is None and port != self._main_port:
            return  # closed before it started serving
        server = await loop.create_server(
            protocol,
            sock=sock,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._limits.handshake_timeout_s,
        )
        self._servers[port] = server

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await self._starting.stop()
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        for sock in self._unserved.values():
            sock.close()
        self._unserved.clear()
        self._port_of.clear()
        await runner.cleanup()
        logger.info("kubelet API stopped")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
