"""One list+watch of pods for all of the gateway's nodes, rather than one watch per node.

Field selectors cannot say "nodeName in (a, b, …)", so the informer watches every bound pod
(`spec.nodeName!=`) and keeps those bound to a node this gateway serves. It relists after a
410 Gone and on reconnect, and diffs the relist against its store so a delete missed while
disconnected is still delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

PODS_PATH = "/api/v1/pods"
# Only bound pods: the API server leaves out the scheduler's work (each pod's unbound create
# and the updates before its binding), which this gateway would decode only to drop.
BOUND_PODS = {"fieldSelector": "spec.nodeName!="}
# Pause before re-listing after the watch failed for any reason other than history compaction.
RELIST_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)

PodHandler = Callable[[str, dict[str, Any]], None]  # (event type, pod) with ADDED/MODIFIED/DELETED


def pod_uid(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["uid"])


class PodInformer:
    """Delivers ADDED, MODIFIED and DELETED for pods whose spec.nodeName `wants` accepts."""

    def __init__(self, api: KubeApi, wants: Callable[[str], bool], handler: PodHandler) -> None:
        self.api = api
        self.wants = wants
        self.handler = handler
        self.store: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()

    def _node_of(self, pod: dict[str, Any]) -> str:
        return str((pod.get("spec") or {}).get("nodeName") or "")

    def _deliver(self, kind: str, pod: dict[str, Any]) -> None:
        """Keep every bound pod (a node may start being served later); pass on the wanted."""
        uid = pod_uid(pod)
        node = self._node_of(pod)
        if kind == "DELETED" or not node:
            old = self.store.pop(uid, None)
            if old is not None and self.wants(self._node_of(old)):
                self.handler("DELETED", pod)
            return
        known = uid in self.store
        self.store[uid] = pod
        if self.wants(node):
            self.handler("MODIFIED" if known else "ADDED", pod)

    def deliver_node(self, node_name: str) -> None:
        """Hand over the pods already bound to a node that has just started being served."""
        for pod in list(self.store.values()):
            if self._node_of(pod) == node_name:
                self.handler("ADDED", pod)

    async def _list(self) -> str:
        listing = await self.api.get(PODS_PATH, **BOUND_PODS)
        seen: set[str] = set()
        for pod in listing.get("items") or []:
            seen.add(pod_uid(pod))
            self._deliver("MODIFIED", pod)
        for uid in set(self.store) - seen:
            self._deliver("DELETED", self.store[uid])
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._list()
                while True:
                    async for event in self.api.watch(PODS_PATH, version, **BOUND_PODS):
                        obj = event.get("object") or {}
                        if event["type"] == "BOOKMARK":
                            version = obj["metadata"]["resourceVersion"]
                            continue
                        version = obj["metadata"]["resourceVersion"]
                        self._deliver(event["type"], obj)
                    failures = 0
            except KubeApiError as exc:
                if not exc.gone:
                    log.warning("pod watch failed: %s; relisting", exc)
                    failures += 1
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                log.warning("pod watch interrupted: %s; relisting", exc)
                failures += 1
            if failures:
                await asyncio.sleep(RELIST_BACKOFF_S[min(failures, len(RELIST_BACKOFF_S)) - 1])
