"""May the caller do this: SubjectAccessReview on the node subresource a path maps to.

The kubelet authorizes every request as an action on its Node object: resource "nodes",
name = the node, subresource from the path (/stats → stats, /metrics → metrics, /logs → log,
/spec → spec, /checkpoint → checkpoint, everything else → proxy), verb from the HTTP method.
This gateway serves many nodes on one port, so the name is the node the request concerns:
the pod's node for per-pod paths, every node of the gateway for aggregated ones (see
`gateway.kubelet.server`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from kubernetes_asyncio import client

from gateway.kubelet.authn import UserInfo
from gateway.kubelet.cache import TtlCache
from gateway.kubelet.errors import AuthorizationUnavailable

logger = logging.getLogger(__name__)

# The kubelet's authorization.webhook cache TTLs: allow decisions live longer than denials
# so that a freshly granted permission takes effect quickly.
ALLOW_CACHE_TTL = 300.0
DENY_CACHE_TTL = 30.0

_VERBS: Mapping[str, str] = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}

# Path prefix → node subresource, in the kubelet's order; anything else is "proxy".
_SUBRESOURCES: tuple[tuple[str, str], ...] = (
    ("/stats", "stats"),
    ("/metrics", "metrics"),
    ("/logs", "log"),
    ("/spec", "spec"),
    ("/checkpoint", "checkpoint"),
)


@dataclass(frozen=True, slots=True)
class NodeAction:
    """What a request does, in authorization terms."""

    verb: str
    subresource: str
    node_name: str

    def forbidden_message(self, user: UserInfo) -> str:
        # The kubelet's wording, so that users and tooling recognise it.
        return (
            f"Forbidden (user={user.name}, verb={self.verb}, resource=nodes, "
            f"subresource={self.subresource})"
        )


def verb_for_method(method: str) -> str:
    return _VERBS.get(method.upper(), method.lower())


def subresource_for_path(path: str) -> str:
    for prefix, subresource in _SUBRESOURCES:
        if path == prefix or path.startswith(prefix + "/"):
            return subresource
    return "proxy"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    async def authorize(self, user: UserInfo, action: NodeAction) -> Decision: ...


class AlwaysAllowAuthorizer:
    """The kubelet's `--authorization-mode=AlwaysAllow`: for tests and closed networks."""

    async def authorize(self, user: UserInfo, action: NodeAction) -> Decision:
        return Decision(allowed=True, reason="AlwaysAllow")


class SubjectAccessReviewAuthorizer:
    """Asks the API server (authorization.k8s.io/v1 SubjectAccessReview), with a cache."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        allow_ttl: float = ALLOW_CACHE_TTL,
        deny_ttl: float = DENY_CACHE_TTL,
    ) -> None:
        self._api = client.AuthorizationV1Api(api)
        self._allow_ttl = allow_ttl
        self._deny_ttl = deny_ttl
        self._cache: TtlCache[tuple[object, ...], Decision] = TtlCache()

    async def authorize(self, user: UserInfo, action: NodeAction) -> Decision:
        key = (
            user.name,
            user.uid,
            user.groups,
            tuple(sorted((k, v) for k, v in user.extra.items())),
            action,
        )
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = await self._review(user, action)
        self._cache.put(key, decision, self._allow_ttl if decision.allowed else self._deny_ttl)
        return decision

    async def _review(self, user: UserInfo, action: NodeAction) -> Decision:
        spec = client.V1SubjectAccessReviewSpec(
            user=user.name,
            groups=list(user.groups) or None,
            uid=user.uid or None,
            extra={k: list(v) for k, v in user.extra.items()} or None,
            resource_attributes=client.V1ResourceAttributes(
                verb=action.verb,
                resource="nodes",
                subresource=action.subresource,
                name=action.node_name or None,
            ),
        )
        try:
            review = await self._api.create_subject_access_review(
                client.V1SubjectAccessReview(spec=spec)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("SubjectAccessReview failed: %s", exc)
            raise AuthorizationUnavailable(str(exc)) from exc
        status = review.status
        return Decision(allowed=bool(status.allowed), reason=status.reason or "")
