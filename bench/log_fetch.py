"""Fetching a whole pod log over HTTP, and the API server proxy's own ceiling beside it
(bench.logs' throughput part): a static file of the log's size served as the log of a pod on a
node object of its own."""

from __future__ import annotations

import contextlib
import ssl
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from bench import processes
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster, free_port


def log_pod(name: str, node: str, image: str, args: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": node,
            "containers": [{"name": "main", "image": image, "args": args}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        },
    }


async def fetch_mb_s(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]) -> float:
    """MB/s of one whole-body GET (read in large chunks, as kubectl does)."""
    started = time.perf_counter()
    got = 0
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {(await response.text())[:300]}")
        async for chunk in response.content.iter_chunked(1 << 20):
            got += len(chunk)
    return got / (time.perf_counter() - started) / 1e6


async def body_size(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]) -> int:
    async with session.get(url, headers=headers) as response:
        response.raise_for_status()
        return len(await response.read())


def kubelet_client(cluster: LocalCluster) -> aiohttp.ClientSession:
    """A client presenting the API server's own kubelet-client certificate: what the API server
    uses on the kubelet leg, so a direct fetch is authorized the same way."""
    context = ssl.create_default_context(cafile=str(cluster.ca_cert))
    pki = cluster.pki_dir
    context.load_cert_chain(pki / "kubelet-client.crt", pki / "kubelet-client.key")
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


async def kubelet_port(api: KubeApi, node: str) -> int:
    status = (await api.get(f"/api/v1/nodes/{node}")).get("status") or {}
    return int(status["daemonEndpoints"]["kubeletEndpoint"]["Port"])


class StaticCeiling:
    """A static file of the log's size served as the log of a pod on a node object of its own:
    fetched through the API server's `pods/log` (the same path as the gateway's logs: kubelet
    leg, TLS, client certificate) and directly, it gives the proxy's own ceiling beside the
    gateway's figure. (The node proxy would be simpler but refuses loopback addresses.)"""

    def __init__(
        self, cluster: LocalCluster, api: KubeApi, work: Path, node: str, namespace: str
    ) -> None:
        self.cluster, self.api, self.work, self.node = cluster, api, work, node
        self.namespace = namespace
        self.port = free_port()
        self.child: processes.Child | None = None

    async def start(self, size: int) -> None:
        path = self.work / "static.txt"
        line = b"static ceiling line of the same size as the log body\n"
        path.write_bytes((line * (size // len(line) + 1))[:size])
        cert, key = self.cluster.sign_serving_cert(["127.0.0.1", "localhost"], self.work / "static")
        argv = [sys.executable, "-m", "bench.static_file_server", str(path), str(cert), str(key)]
        self.child = processes.Child(
            "static", [*argv, str(self.port)], self.work / "static.log", None, keep=("ready",)
        )
        await self.child.start()
        await self.child.wait_line("ready", 30)
        await self.api.create("/api/v1/nodes", {"metadata": {"name": self.node}})
        status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
        }
        await self.api.patch(f"/api/v1/nodes/{self.node}/status", {"status": status}, kind="merge")
        pod = log_pod("static", self.node, "static", [])
        await self.api.create(f"/api/v1/namespaces/{self.namespace}/pods", pod)

    @property
    def log_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/static/log"

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
        with contextlib.suppress(Exception):
            await self.api.delete(f"/api/v1/nodes/{self.node}")
