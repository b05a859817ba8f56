"""The kubelet API server: one HTTPS listener shared by all of the gateway's nodes.

server = KubeletServer(provider, authenticator=..., authorizer=..., ssl_context=...,
                       host="0.0.0.0", port=10250)
await server.start()
...
await server.stop()   # ends log followers promptly, then closes connections
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from gateway.kubelet.authn import Authenticator
from gateway.kubelet.authz import Authorizer
from gateway.kubelet.handlers import KubeletHandlers
from gateway.kubelet.middleware import auth_middleware
from gateway.kubelet.provider import KubeletProvider

logger = logging.getLogger(__name__)

DEFAULT_PORT = 10250
# Followers notice shutdown within one log poll interval; this bounds the wait for the rest.
SHUTDOWN_TIMEOUT = 5.0


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
    stopping = _Stopping()
    handlers = KubeletHandlers(provider, node_scope=node_scope, stopping=stopping)
    app = web.Application(
        middlewares=[auth_middleware(authenticator, authorizer, handlers.nodes_concerned)]
    )
    handlers.register(app)

    async def end_followers(_: web.Application) -> None:
        stopping.stopping = True

    app.on_shutdown.append(end_followers)
    return app


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
    ) -> None:
        self._app = create_app(
            provider, authenticator=authenticator, authorizer=authorizer, node_scope=node_scope
        )
        self._ssl_context = ssl_context
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._runner is None or not self._runner.addresses:
            return self._port
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._runner = None
            raise
        self._site = site
        logger.info("kubelet API listening on https://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()
        logger.info("kubelet API stopped")
