"""Route handlers of the kubelet API: containerLogs, pods, healthz, stats and metrics."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from gateway.kubelet.errors import BadLogQuery
from gateway.kubelet.log_query import parse_log_query
from gateway.kubelet.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.kubelet.metrics import resource_metrics_text
from gateway.kubelet.provider import JsonObject, KubeletProvider
from gateway.kubelet.stats import NodeStats
from gateway.kubelet.summary import merge_nodes, summary_json
from gateway.logs import previous_log_exists, read_logs
from gateway.logs.timestamps import now_ns

logger = logging.getLogger(__name__)

CONTAINER_LOGS_PATH = "/containerLogs/{namespace}/{pod}/{container}"


class KubeletHandlers:
    """The endpoints, over a provider; `node_scope` limits a listener to one node."""

    def __init__(
        self,
        provider: KubeletProvider,
        *,
        node_scope: str | None,
        stopping: Callable[[], bool],
    ) -> None:
        self._provider = provider
        self._node_scope = node_scope
        self._stopping = stopping

    def register(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/pods", self.pods)
        app.router.add_get(CONTAINER_LOGS_PATH, self.container_logs)
        app.router.add_get("/stats/summary", self.stats_summary)
        app.router.add_get("/metrics/resource", self.metrics_resource)

    # ---- which nodes a request concerns (for authorization) -----------------------------

    def served_nodes(self) -> list[str]:
        if self._node_scope is not None:
            return [self._node_scope]
        return list(self._provider.node_names())

    async def nodes_concerned(self, request: web.Request) -> list[str]:
        """The nodes whose subresource a request acts on.

        A pod's logs concern the pod's node. Everything else on a shared port (pods list,
        stats, unknown paths) covers every node served here, so the caller needs the
        permission on each; with no node yet, an empty name asks for "any node" rights.
        """
        if request.match_info.route.resource is not None and (
            request.match_info.route.resource.canonical == CONTAINER_LOGS_PATH
        ):
            pod = await self._find_pod(request.match_info["namespace"], request.match_info["pod"])
            node = _node_name(pod) if pod is not None else ""
            if node:
                return [node]
        return self.served_nodes() or [""]

    # ---- endpoints -------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        served = set(self.served_nodes())
        items = [p for p in await self._provider.list_pods() if _node_name(p) in served]
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.json_response(body, dumps=_compact_json)

    async def stats_summary(self, request: web.Request) -> web.Response:
        node = await self._node_stats()
        return web.json_response(summary_json(node), dumps=_compact_json)

    async def metrics_resource(self, request: web.Request) -> web.Response:
        node = await self._node_stats()
        return web.Response(
            body=resource_metrics_text(node).encode(),
            headers={"Content-Type": METRICS_CONTENT_TYPE},
        )

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        pod_name = request.match_info["pod"]
        container = request.match_info["container"]
        try:
            query = parse_log_query(request.query, now_ns=now_ns())
        except BadLogQuery as exc:
            return web.Response(status=400, text=str(exc))
        pod = await self._find_pod(namespace, pod_name)
        if pod is None:
            return web.Response(status=404, text=f'pod "{pod_name}" does not exist')
        if container not in _container_names(pod):
            return web.Response(
                status=404, text=f'container "{container}" not found in pod "{pod_name}"'
            )
        source = await self._provider.find_container_log(namespace, pod_name, container)
        if source is None:
            return web.Response(
                status=400,
                text=f'container "{container}" in pod "{pod_name}" is waiting to start',
            )
        if query.previous and not previous_log_exists(source):
            return web.Response(
                status=400,
                text=f'previous terminated container "{container}" in pod "{pod_name}" not found',
            )

        chunks = read_logs(
            source,
            tail_lines=query.tail_lines,
            since_ns=query.since_ns,
            timestamps=query.timestamps,
            limit_bytes=query.limit_bytes,
            follow=query.follow,
            previous=query.previous,
            stop=lambda: self._stopping() or _client_gone(request),
            announce_ready=True,
        )
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        try:
            async with contextlib.aclosing(chunks):
                await anext(chunks)  # files open, start found: now the headers may go
                await response.prepare(request)
                async for chunk in chunks:
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            logger.debug("log client for %s/%s/%s went away", namespace, pod_name, container)
        return response

    # ---- helpers ----------------------------------------------------------------------

    async def _find_pod(self, namespace: str, name: str) -> JsonObject | None:
        pod = await self._provider.get_pod(namespace, name)
        if pod is None or _node_name(pod) not in self.served_nodes():
            return None
        return pod

    async def _node_stats(self) -> NodeStats:
        served = self.served_nodes()
        nodes = [n for n in await self._provider.stats() if n.node_name in served]
        if self._node_scope is not None and len(nodes) == 1:
            return nodes[0]
        # A shared listener cannot tell which node the scraper asked about: report the sums
        # under the first node's name (docs/kubelet-api.md explains the trade-off).
        return merge_nodes(nodes, served[0] if served else "", now_ns())


def _node_name(pod: JsonObject) -> str:
    name = pod.get("spec", {}).get("nodeName", "")
    return name if isinstance(name, str) else ""


def _container_names(pod: JsonObject) -> set[str]:
    spec = pod.get("spec", {})
    names: set[str] = set()
    for key in ("containers", "initContainers", "ephemeralContainers"):
        containers: Sequence[Any] = spec.get(key) or ()
        names.update(c.get("name", "") for c in containers if isinstance(c, dict))
    return names


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
