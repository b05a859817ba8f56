"""A small JSON client for the Kubernetes API: rate-limited, retrying, with raw dicts and watches.

kubernetes_asyncio loads the credentials (kubeconfig, in-cluster service account, exec plugins and
token refresh); objects stay plain JSON (no model classes to convert for every pod event).
Requests go through a lean keep-alive HTTP/1.1 pool (`gateway.kube.http1`: at 1000 devices the
~100 lease renewals a second made aiohttp's per-request cost the gateway's largest); watches
go through one aiohttp session, split into events here (`watch_lines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config as kubeconfig_loader
from kubernetes_asyncio.config.config_exception import ConfigException

from gateway.errors import ConfigError, WireletError
from gateway.kube.http1 import Http1Pool, HttpConnectionError

log = logging.getLogger(__name__)

# Retry a failed request this many times (429, 5xx, connection errors) before giving up.
MAX_ATTEMPTS = 6
# First retry delay; doubled each attempt up to RETRY_MAX_S, with jitter, unless Retry-After says.
RETRY_BASE_S = 0.2
RETRY_MAX_S = 10.0
# A watch the server has not closed is re-opened after this long anyway (server default ~30-60 min).
WATCH_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 30.0
# Answers that the same request can never turn into a success: a malformed (400) or invalid
# (422) object, a refused permission (403), a method or body the server does not take, a body
# too large. Never retried here, and callers must not loop on them either.
USER_AGENT = "wirelet-gateway"
PERMANENT_STATUSES = frozenset({400, 403, 405, 406, 413, 415, 422})


class KubeApiError(WireletError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, body: Any, method: str, path: str) -> None:
        message = body.get("message", "") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def permanent(self) -> bool:
        """Trying the same request again cannot succeed (see PERMANENT_STATUSES)."""
        return self.status in PERMANENT_STATUSES


def _decode(status: int, body: bytes) -> Any:
    """The answer's JSON; an error answer that is not JSON (a proxy's page) as its text."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if status < 400:
            raise  # a success must be JSON: a broken answer, asked again
        return body.decode(errors="replace")


class RateLimiter:
    """Token bucket: `qps` requests per second on average, up to `burst` at once."""

    def __init__(self, qps: float, burst: int) -> None:
        self.rate = qps
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self._lock.locked():
            # A token at hand and nobody waiting: taken at once (no await between the check
            # and the take). ~100 lease renewals a second at 1000 devices come this way.
            now = time.monotonic()
            tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            if tokens >= 1.0:
                self.tokens, self.stamp = tokens - 1.0, now
                return
        async with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1.0:
                wait = (1.0 - self.tokens) / self.rate
                await asyncio.sleep(wait)
                self.stamp = time.monotonic()
                self.tokens = 0.0
            else:
                self.tokens -= 1.0


async def load_configuration(
    kubeconfig: str | None, private_dir: Path | None = None
) -> Configuration:
    """`in-cluster` uses the pod's service account; otherwise a kubeconfig file (or its default).

    Keys embedded in a kubeconfig are written to files by the loader (ssl reads keys from files
    only); with `private_dir` they go there instead of the system temp dir. Build the clients,
    then call `forget_credential_files(private_dir)`.
    """
    configuration = Configuration()
    try:
        if kubeconfig == "in-cluster":
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            if kubeconfig and not os.path.exists(kubeconfig):  # noqa: ASYNC240 - start-up only
                raise ConfigError(f"kube.kubeconfig: {kubeconfig}: no such file")
            await kube_config.load_kube_config(
                config_file=kubeconfig,
                client_configuration=configuration,
                temp_file_path=str(private_dir) if private_dir else None,
            )
    except (ConfigException, OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        why = str(exc)
        if isinstance(exc, TypeError | AttributeError | KeyError):
            # YAML of the wrong shape (a word, `clusters: 5`, an empty file) reaches the
            # loader's code as the wrong types; its own words name Python types, not the file.
            why = (
                "not a kubeconfig (expected a YAML mapping with clusters, users, contexts and "
                f"current-context; the loader said: {exc})"
            )
        raise ConfigError(
            f"kube.kubeconfig: cannot load credentials from {where}: {why} "
            "(give --kubeconfig PATH, or 'in-cluster' inside a pod)"
        ) from None
    return configuration


def forget_credential_files(private_dir: Path) -> None:
    """Delete the key files the loader wrote under `private_dir` once clients are built, and
    drop them from the loader's cache, which would otherwise hand the deleted paths to the next
    load in this process (tests start several gateways in one process)."""
    cache: dict[str, str] = kubeconfig_loader._temp_files
    for content, name in list(cache.items()):
        if Path(name).parent == private_dir:
            del cache[content]
            with contextlib.suppress(OSError):
                os.remove(name)


class KubeApi:
    """JSON requests and watches against one API server."""

    def __init__(
        self,
        configuration: Configuration,
        *,
        qps: float = 50.0,
        burst: int = 100,
        connections: int = 64,
    ):
        self.configuration = configuration
        self.connections = connections  # requests in flight at once (HTTP/1.1: one each)
        self.base = (configuration.host or "").rstrip("/")
        self.limiter = RateLimiter(qps, burst)
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None  # watches
        self._pool: Http1Pool | None = None  # every other request
        self.retries = 0  # figure for benchmarks and logs
        self.requests = 0  # requests sent, retries included (figures; tests bound API load)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self.connections)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _http(self) -> Http1Pool:
        if self._pool is None:
            self._pool = Http1Pool(
                self.base, self._ssl, limit=self.connections, timeout=REQUEST_TIMEOUT_S
            )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _headers(self, content_type: str) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
        }
        token = await self.configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        url = self.base + path
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            url += "?" + urlencode(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in clean.items()}
            )
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        answer: bool = True,
    ) -> Any:
        """One API call with retries on 429 (honouring Retry-After), 5xx and connection errors.

        `answer=False`: the caller does not use a successful answer, which is not decoded (None
        is returned). A pod status PATCH or delete answers with the whole pod, as large as a
        watch event and, with many pods, as much decoding.

        4xx answers other than 429 raise KubeApiError at once: conflicts (409) and missing objects
        (404) are the caller's to decide; `.permanent` ones must not be retried by anyone.
        """
        # orjson: the pod watch and status writes are most of the gateway's JSON work with many
        # pods; it decodes and encodes several times faster than the json module.
        data = b"" if body is None else orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
        target = self._url(path, query)[len(self.base) :]
        delay = RETRY_BASE_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self.limiter.acquire()
            self.requests += 1
            try:
                headers = await self._headers(content_type)
                # Timed by the pool (REQUEST_TIMEOUT_S from a connection on): TimeoutError.
                response = await self._http().request(method, target, headers, data)
                if response.status < 400 and not answer:
                    return None
                payload = _decode(response.status, response.body)
            except (HttpConnectionError, TimeoutError, orjson.JSONDecodeError) as exc:
                if attempt == MAX_ATTEMPTS:
                    raise KubeApiError(0, type(exc).__name__, str(exc), method, path) from exc
                log.debug("%s %s failed (%s), retrying", method, path, exc)
            else:
                if response.status < 400:
                    return payload
                error = KubeApiError(response.status, response.reason, payload, method, path)
                retry_after = response.headers.get("retry-after")
                if error.status != 429 and error.status < 500:
                    raise error
                if attempt == MAX_ATTEMPTS:
                    raise error
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
                log.debug("%s %s: %s, retrying in %.2fs", method, path, error.status, delay)
            self.retries += 1
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, RETRY_MAX_S)
        raise AssertionError("unreachable")

    async def get(self, path: str, **query: Any) -> Any:
        return await self.request("GET", path, query=query)

    async def get_text(self, path: str) -> str:
        """A text answer (`/metrics`, `/readyz`): one attempt, errors raised as KubeApiError."""
        await self.limiter.acquire()
        self.requests += 1
        headers = await self._headers("application/json")
        headers["Accept"] = "text/plain"
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                response = await self._http().request("GET", path, headers, b"")
        except (HttpConnectionError, TimeoutError) as exc:
            raise KubeApiError(0, type(exc).__name__, str(exc), "GET", path) from exc
        text = response.body.decode(errors="replace")
        if response.status >= 400:
            raise KubeApiError(response.status, response.reason, text, "GET", path)
        return text

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body=body)

    async def patch(
        self, path: str, body: Any, *, kind: str = "strategic", answer: bool = True
    ) -> Any:
        types = {
            "strategic": "application/strategic-merge-patch+json",
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }
        return await self.request("PATCH", path, body=body, content_type=types[kind], answer=answer)

    async def replace(self, path: str, body: Any, *, answer: bool = True) -> Any:
        """PUT: the whole object; with metadata.resourceVersion set, refused (409) if it changed."""
        return await self.request("PUT", path, body=body, answer=answer)

    async def delete(self, path: str, body: Any = None, *, answer: bool = True) -> Any:
        return await self.request("DELETE", path, body=body, answer=answer)

    async def watch(
        self, path: str, resource_version: str, **query: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events (`{"type": ..., "object": ...}`) until the server ends the watch.

        A 410 Gone (history compacted) raises KubeApiError with `.gone`; the caller relists.
        """
        params = {
            **query,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_TIMEOUT_S,
        }
        await self.limiter.acquire()
        async with self._client().get(
            self._url(path, params),
            headers=await self._headers("application/json"),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=WATCH_TIMEOUT_S + 30),
        ) as response:
            if response.status >= 400:
                text = await response.text()
                payload = orjson.loads(text) if text.startswith("{") else text
                raise KubeApiError(response.status, response.reason or "", payload, "WATCH", path)
            async for line in watch_lines(response.content):
                event = orjson.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeApiError(
                        int(status.get("code", 500)),
                        status.get("reason", ""),
                        status,
                        "WATCH",
                        path,
                    )
                yield event


async def watch_lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The non-blank lines of a watch stream, one event each, whatever their size.

    Read as the chunks arrive and split here: aiohttp's readline refuses a line over its buffer
    limit (512 KiB; LineTooLong, which is not a ValueError), and a pod that large (big env
    values; the API server stores up to ~1.5 MB) bound to any node ended the gateway's pod
    watch for good. Per chunk it is also cheaper than readline's per-line buffer walk when many
    events arrive at once.
    """
    partial: list[bytes] = []  # the start of a line that continues in a later chunk
    async for chunk in stream.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if partial:
                partial.append(chunk[start:end])
                line = b"".join(partial)
                partial.clear()
            else:
                line = chunk[start:end]
            start = end + 1
            if line.strip():
                yield line
        if start < len(chunk):
            partial.append(chunk[start:])
    if partial and (line := b"".join(partial)).strip():
        yield line  # the server ended the stream without a final newline
