"""Authentication and authorization in front of every route but /healthz (kubelet style)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.kubelet.authn import Authenticator
from gateway.kubelet.authz import (
    Authorizer,
    NodeAction,
    subresource_for_path,
    verb_for_method,
)
from gateway.kubelet.errors import AuthenticationUnavailable, AuthorizationUnavailable

logger = logging.getLogger(__name__)

# Liveness probes of the gateway itself must work without credentials.
UNAUTHENTICATED_PATHS = frozenset({"/healthz"})

NodesConcerned = Callable[[web.Request], Awaitable[list[str]]]


def auth_middleware(
    authenticator: Authenticator, authorizer: Authorizer, nodes_concerned: NodesConcerned
) -> Middleware:
    @web.middleware
    async def authenticate_and_authorize(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        try:
            user = await authenticator.authenticate(request)
        except AuthenticationUnavailable:
            user = None
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        verb = verb_for_method(request.method)
        subresource = subresource_for_path(request.path)
        nodes = await nodes_concerned(request)
        actions = [NodeAction(verb, subresource, node) for node in nodes]
        try:
            decisions = await asyncio.gather(*(authorizer.authorize(user, a) for a in actions))
        except AuthorizationUnavailable:
            message = actions[0].forbidden_message(user).replace("Forbidden", "Authorization error")
            return web.Response(status=500, text=message)
        for action, decision in zip(actions, decisions, strict=True):
            if not decision.allowed:
                logger.info(
                    "denied %s %s for %s on node %r: %s",
                    request.method,
                    request.path,
                    user.name,
                    action.node_name,
                    decision.reason,
                )
                return web.Response(status=403, text=action.forbidden_message(user))
        return await handler(request)

    return authenticate_and_authorize
