"""Who is calling: x509 client certificates first, then bearer tokens via TokenReview.

This is the kubelet's `--client-ca-file` plus `--authentication-token-webhook` setup:
- a client certificate verified against the client CA during the TLS handshake names the
  user (subject CN) and groups (subject O); the handshake already rejected any other cert;
- a bearer token is sent to the API server's TokenReview API, and the answer is cached
  briefly (the kubelet's default webhook cache TTL is 2 minutes);
- no credentials at all means anonymous, which this server refuses (401).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from kubernetes_asyncio import client

from gateway.kubelet.cache import TtlCache
from gateway.kubelet.errors import AuthenticationUnavailable

logger = logging.getLogger(__name__)

# How long a TokenReview answer is reused: the kubelet's authentication.webhook.cacheTTL.
TOKEN_REVIEW_CACHE_TTL = 120.0


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> UserInfo | None:
        """The caller's identity, or None if this method finds no credentials it accepts."""
        ...


class X509Authenticator:
    """The user of a client certificate the TLS layer verified against the client CA."""

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        transport = request.transport
        if transport is None:
            return None
        # `peercert` is only populated for a certificate that passed verification.
        peercert = transport.get_extra_info("peercert")
        if not peercert:
            return None
        return user_from_peercert(peercert)


def user_from_peercert(peercert: Mapping[str, Any]) -> UserInfo | None:
    """CN is the user name and every O a group, as the API server and kubelet read them."""
    name = ""
    groups: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    if not name:
        return None
    return UserInfo(name=name, groups=tuple(groups))


class TokenReviewAuthenticator:
    """Bearer tokens checked by the API server (authentication.k8s.io/v1 TokenReview)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        audiences: Sequence[str] = (),
        cache_ttl: float = TOKEN_REVIEW_CACHE_TTL,
    ) -> None:
        self._api = client.AuthenticationV1Api(api)
        self._audiences = list(audiences)
        self._cache_ttl = cache_ttl
        # Keyed by a hash so that tokens do not sit in memory longer than needed.
        # Values are 1-tuples so that a cached rejection (None) differs from a miss.
        self._cache: TtlCache[str, tuple[UserInfo | None]] = TtlCache()

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        token = bearer_token(request)
        if token is None:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            return cached[0]
        user = await self._review(token)
        # Rejections are cached too, as the kubelet does, so a bad token cannot hammer the API.
        self._cache.put(key, (user,), self._cache_ttl)
        return user

    async def _review(self, token: str) -> UserInfo | None:
        spec = client.V1TokenReviewSpec(token=token, audiences=self._audiences or None)
        try:
            review = await self._api.create_token_review(client.V1TokenReview(spec=spec))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The API being unreachable is not the caller's fault, but we cannot tell who
            # they are: refuse (401) without caching, as the kubelet does.
            logger.warning("TokenReview failed: %s", exc)
            raise AuthenticationUnavailable(str(exc)) from exc
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            logger.debug("TokenReview rejected a token: %s", status.error if status else "")
            return None
        user = status.user
        return UserInfo(
            name=user.username or "",
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra={k: tuple(v) for k, v in (user.extra or {}).items()},
        )


class ChainAuthenticator:
    """Tries each authenticator in order; the first identity wins."""

    def __init__(self, *authenticators: Authenticator) -> None:
        self._authenticators = authenticators

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        for authenticator in self._authenticators:
            user = await authenticator.authenticate(request)
            if user is not None:
                return user
        return None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
