"""Route handlers of the kubelet API: containerLogs, pods, runningpods, healthz, configz, stats,
metrics (exec, attach and portForward are in gateway.kubelet.streaming).

Every answer is for the node whose port the request arrived on (`scopes`, filled by the
server), or for every served node on the gateway's own listener.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.kubelet.errors import BadLogQuery, NoContainerLog
from gateway.kubelet.log_query import parse_log_query
from gateway.kubelet.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.kubelet.metrics import resource_metrics_text
from gateway.kubelet.podjson import container_names, node_name
from gateway.kubelet.provider import JsonObject, KubeletProvider
from gateway.kubelet.stats import NodeStats
from gateway.kubelet.streaming import StreamingHandlers
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
        configz: JsonObject | None = None,
    ) -> None:
        self._provider = provider
        self._node_scope = node_scope
        self._stopping = stopping
        self._configz = configz or {}
        # local port -> the one node a listener answers for (the server keeps this current)
        self.scopes: dict[int, str] = {}

    def register(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/configz", self.configz)
        app.router.add_get("/pods", self.pods)
        app.router.add_get("/runningpods", self.running_pods)
        app.router.add_get("/runningpods/", self.running_pods)
        app.router.add_get(CONTAINER_LOGS_PATH, self.container_logs)
        app.router.add_get("/stats/summary", self.stats_summary)
        app.router.add_get("/metrics/resource", self.metrics_resource)
        app.router.add_get("/logs/", self.node_logs)
        app.router.add_get("/logs/{name}", self.node_log_file)
        StreamingHandlers(self._provider, self.find_pod, self._stopping).register(app)

    # ---- which nodes a request concerns (for authorization) -----------------------------

    def scope(self, request: web.Request) -> str | None:
        """The one node this request's listener answers for, None for the gateway's own."""
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        if sockname is not None:
            node = self.scopes.get(int(sockname[1]))
            if node is not None:
                return node
        return self._node_scope

    def served_nodes(self, request: web.Request) -> list[str]:
        scope = self.scope(request)
        if scope is not None:
            return [scope]
        return list(self._provider.node_names())

    async def nodes_concerned(self, request: web.Request) -> list[str]:
        """The nodes whose subresource a request acts on.

        A pod's logs concern the pod's node. Everything else on a shared port (pods list,
        stats, unknown paths) covers every node served here, so the caller needs the
        permission on each; with no node yet, an empty name asks for "any node" rights.
        """
        if "namespace" in request.match_info and "pod" in request.match_info:
            pod = await self.find_pod(
                request, request.match_info["namespace"], request.match_info["pod"]
            )
            node = node_name(pod) if pod is not None else ""
            if node:
                return [node]
        return self.served_nodes(request) or [""]

    # ---- endpoints -------------------------------------------------------------------

    def _node_logs(self, request: web.Request) -> dict[str, Path]:
        node = self.scope(request)
        if node is None:
            raise web.HTTPNotFound(
                text="node logs are served on each node's own port: "
                "kubectl get --raw /api/v1/nodes/NODE/proxy/logs/\n"
            )
        return {path.name: path for path in self._provider.node_log_files(node)}

    async def node_logs(self, request: web.Request) -> web.Response:
        """The node's log files, listed as the kubelet's `/logs/` (a directory index)."""
        links = "".join(f'<a href="{n}">{n}</a>\n' for n in sorted(self._node_logs(request)))
        return web.Response(text=f"<pre>\n{links}</pre>\n", content_type="text/html")

    async def node_log_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self._node_logs(request).get(name)
        if path is None:
            raise web.HTTPNotFound(text=f"no log {name!r} on this node: see /logs/\n")
        return web.FileResponse(path, headers={"Content-Type": "text/plain; charset=utf-8"})

    async def healthz(self, request: web.Request) -> web.Response:
        """A node's port: that node's health (its device connected); the gateway's own port:
        the gateway is up."""
        scope = self.scope(request)
        problem = self._provider.node_problem(scope) if scope is not None else ""
        if problem:
            return web.Response(status=503, text=f"unhealthy: {problem}")
        return web.Response(text="ok")

    async def configz(self, request: web.Request) -> web.Response:
        """The kubelet's /configz: {"kubeletconfig": KubeletConfiguration}, with what applies
        to a gateway (its port is the listener's own)."""
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        config = {
            "kind": "KubeletConfiguration",
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "enableServer": True,
            "readOnlyPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True, "cacheTTL": "2m0s"},
            },
            "authorization": {
                "mode": "Webhook",
                "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"},
            },
            **self._configz,
        }
        if sockname is not None:
            config["port"] = int(sockname[1])
        return web.json_response({"kubeletconfig": config}, dumps=_compact_json)

    async def pods(self, request: web.Request) -> web.Response:
        served = set(self.served_nodes(request))
        items = [p for p in await self._provider.list_pods() if node_name(p) in served]
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.json_response(body, dumps=_compact_json)

    async def running_pods(self, request: web.Request) -> web.Response:
        """What runs on the device, as the kubelet reports its runtime's pods: name, namespace,
        uid and the containers that are running (name and image), nothing else."""
        served = set(self.served_nodes(request))
        items = [p for p in await self._provider.running_pods() if node_name(p) in served]
        for item in items:
            item.get("spec", {}).pop("nodeName", None)
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.json_response(body, dumps=_compact_json)

    async def stats_summary(self, request: web.Request) -> web.Response:
        node = await self._node_stats(request)
        return web.json_response(summary_json(node), dumps=_compact_json)

    async def metrics_resource(self, request: web.Request) -> web.Response:
        node = await self._node_stats(request)
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
        pod = await self.find_pod(request, namespace, pod_name)
        if pod is None:
            return web.Response(status=404, text=f'pod "{pod_name}" does not exist')
        if container not in container_names(pod):
            return web.Response(
                status=404, text=f'container "{container}" not found in pod "{pod_name}"'
            )
        try:
            source = await self._provider.find_container_log(namespace, pod_name, container)
        except NoContainerLog as exc:
            return web.Response(status=400, text=str(exc))
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

    async def find_pod(self, request: web.Request, namespace: str, name: str) -> JsonObject | None:
        pod = await self._provider.get_pod(namespace, name)
        if pod is None or node_name(pod) not in self.served_nodes(request):
            return None
        return pod

    async def _node_stats(self, request: web.Request) -> NodeStats:
        served = self.served_nodes(request)
        nodes = [n for n in await self._provider.stats() if n.node_name in served]
        if self.scope(request) is not None and len(nodes) == 1:
            return nodes[0]
        # The gateway's own listener is not any one node's: report the sums under the first
        # node's name (nodes' own listeners answer for exactly their node).
        return merge_nodes(nodes, served[0] if served else "", now_ns())


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
