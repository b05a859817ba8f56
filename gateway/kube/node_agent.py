"""One device's Node: created (and re-created if deleted), status kept current, Lease renewed.

Mirrors the kubelet's node status loop: the Ready condition follows the device link, status is
patched on change and at least every `status_interval_s`, and the Lease in kube-node-lease is
renewed every `lease_renew_interval_s` while the device answers (not while it is gone, so the
node lifecycle controller sees it as unreachable just as it would a powered-off machine).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from gateway.config import NodeConfig
from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.node_object import NodeFacts, node_manifest, node_status, ready_condition

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
# A renewal this much after its due time counts as late in the figures (scale benchmark).
LEASE_LATE_GRACE_S = 1.0


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    """Keeps one Node and its Lease in step with one device's link."""

    def __init__(
        self,
        api: KubeApi,
        name: str,
        facts: NodeFacts,
        config: NodeConfig,
        *,
        node_ip: str,
        kubelet_port: int,
        events: EventRecorder | None = None,
    ) -> None:
        self.api = api
        self.name = name
        self.facts = facts
        self.config = config
        self.node_ip = node_ip
        self.kubelet_port = kubelet_port
        self.events = events
        self.link_up = False
        self.reason = "DeviceConnecting"
        self.message = "waiting for the device's handshake"
        self.since = datetime.now(UTC)
        self.boot = self.since
        self.node_uid: str | None = None
        # resourceVersion of our Lease as last written (None: read it, or create it, first).
        self._lease_version: str | None = None
        self._wake = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None  # the loop's sleep, cut short by _signal
        # The status as last written but for its conditions (None: write everything next time).
        self._status_rest: dict[str, Any] | None = None
        self._last_status = 0.0
        self.status_writes = 0
        self.lease_renewals = 0
        self.lease_late = 0  # renewals made later than the renew interval plus a grace
        self.removed = False  # deleted after nodes.remove_after_s without its device
        self._down_since: float | None = None
        self._pending_removal: asyncio.Future[None] | None = None

    # --- inputs -------------------------------------------------------------------------------

    def set_link(self, up: bool, reason: str, message: str) -> None:
        """Called by the device side whenever the link goes up or down."""
        if up != self.link_up:
            self.since = datetime.now(UTC)
            if self.events:
                kind = "Normal" if up else "Warning"
                self.events.record(
                    ObjectRef.node(self.name), kind, "NodeReady" if up else "NodeNotReady", message
                )
        changed = (up, reason, message) != (self.link_up, self.reason, self.message)
        self.link_up, self.reason, self.message = up, reason, message
        if changed:
            self._signal()

    def _signal(self) -> None:
        self._wake.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- API writes ---------------------------------------------------------------------------

    async def ensure_node(self) -> None:
        """Create the Node, or adopt the one a previous run (or another gateway start) left."""
        manifest = node_manifest(self.name, self.facts, self.config)
        if self.events:
            # The kubelet's "Starting kubelet." when it starts serving the node.
            self.events.record(
                ObjectRef.node(self.name),
                "Normal",
                "Starting",
                f"Starting wirelet for device {self.facts.device_id}",
            )
        try:
            created = await self.api.create("/api/v1/nodes", manifest)
            self.node_uid = created["metadata"]["uid"]
            log.info("node %s created", self.name)
            if self.events:
                self.events.record(
                    ObjectRef.node(self.name), "Normal", "RegisteredNode", "node registered"
                )
        except KubeApiError as exc:
            if not exc.conflict:
                raise
            patch = {"metadata": manifest["metadata"], "spec": manifest["spec"]}
            existing = await self.api.patch(f"/api/v1/nodes/{self.name}", patch)
            self.node_uid = existing["metadata"]["uid"]
            log.info("node %s exists; adopted", self.name)
        self._lease_version = None
        self._status_rest = None
        await self.write_status()

    async def write_status(self) -> None:
        now = datetime.now(UTC)
        ready = ready_condition(
            self.link_up,
            "KubeletReady" if self.link_up else self.reason,
            self.message,
            now,
            self.since,
        )
        status = node_status(
            self.facts,
            self.config,
            node_ip=self.node_ip,
            kubelet_port=self.kubelet_port,
            ready=ready,
            now=now,
            boot=self.boot,
        )
        # Like the kubelet's two-way patch: when only the conditions (their heartbeat times)
        # changed since the last write, send only them (merged by type); the Node is the same.
        rest = {key: value for key, value in status.items() if key != "conditions"}
        body = {"conditions": status["conditions"]} if rest == self._status_rest else status
        self._status_rest = None  # unknown until this write succeeds
        try:
            await self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": body})
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            log.warning(
                "node %s was deleted while its device is attached; creating it again", self.name
            )
            await self.ensure_node()
            return
        self._status_rest = rest
        self.status_writes += 1
        self._last_status = asyncio.get_running_loop().time()

    async def renew_lease(self) -> None:
        """Renew (or create) the Lease: a merge patch of its spec carrying the resourceVersion
        last written, so a concurrent change still conflicts (409) as a full update would."""
        now = datetime.now(UTC)
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"
        version = self._lease_version
        try:
            if version is None:
                try:
                    lease = await self.api.get(path)
                except KubeApiError as exc:
                    if not exc.not_found:
                        raise
                    lease = await self.api.create(
                        f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases",
                        self._new_lease(now),
                    )
                    self._lease_version = lease["metadata"]["resourceVersion"]
                    self.lease_renewals += 1
                    return
                version = lease["metadata"]["resourceVersion"]
            patch = {
                "metadata": {"resourceVersion": version},
                "spec": {
                    "holderIdentity": self.name,
                    "leaseDurationSeconds": self.config.lease_duration_s,
                    "renewTime": micro_time(now),
                },
            }
            lease = await self.api.patch(path, patch, kind="merge")
            self._lease_version = lease["metadata"]["resourceVersion"]
            self.lease_renewals += 1
        except KubeApiError as exc:
            self._lease_version = None  # re-read next time: a conflict or a deleted lease
            if exc.not_found:
                # The garbage collector deletes the lease with its node: check the node too.
                await self._ensure_node_exists()
            elif not exc.conflict:
                raise

    def _new_lease(self, now: datetime) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": LEASE_NAMESPACE}
        if self.node_uid:
            meta["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.node_uid}
            ]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": self.config.lease_duration_s,
                "renewTime": micro_time(now),
            },
        }

    async def _ensure_node_exists(self) -> None:
        try:
            node = await self.api.get(f"/api/v1/nodes/{self.name}")
            self.node_uid = node["metadata"]["uid"]
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            log.warning(
                "node %s was deleted while its device is attached; creating it again", self.name
            )
            await self.ensure_node()

    async def delete_node(self) -> None:
        try:
            await self.api.delete(f"/api/v1/nodes/{self.name}")
        except KubeApiError as exc:
            if not exc.not_found:
                raise

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Status on change and every status interval; lease every renew interval while up."""
        loop = asyncio.get_running_loop()
        await self._retrying(self.ensure_node)
        next_lease: float | None = None  # None while the link is down: no lease renewals
        while True:
            now = loop.time()
            if self._remove_if_gone_too_long(now):
                await self._wake.wait()  # nothing to do until the device is back
                continue
            if self.removed:
                await self._retrying(self.ensure_node)
                self.removed = False
            if self._wake.is_set() or now - self._last_status >= self.config.status_interval_s:
                self._wake.clear()
                await self._retrying(self.write_status)
            if not self.link_up:
                next_lease = None
            elif next_lease is None or now >= next_lease:
                if next_lease is not None and now - next_lease > LEASE_LATE_GRACE_S:
                    self.lease_late += 1
                await self._retrying(self.renew_lease)
                next_lease = now + self.config.lease_renew_interval_s
            deadline = self._last_status + self.config.status_interval_s
            if next_lease is not None:
                deadline = min(deadline, next_lease)
            if self._down_since is not None and self.config.remove_after_s > 0:
                deadline = min(deadline, self._down_since + self.config.remove_after_s)
            await self._sleep_until(deadline)

    async def _sleep_until(self, deadline: float) -> None:
        """Until `deadline` (loop time) or `_signal()`: one timer handle, no task per wait."""
        if self._wake.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(deadline, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _remove_if_gone_too_long(self, now: float) -> bool:
        """With nodes.remove_after_s set, a device gone that long loses its node (until back)."""
        limit = self.config.remove_after_s
        if self.link_up or limit <= 0:
            self._down_since = None
            return False
        if self._down_since is None:
            self._down_since = now
        if self.removed:
            self._wake.clear()
            return True
        if now - self._down_since < limit:
            return False
        self.removed = True
        self._wake.clear()
        self._pending_removal = asyncio.ensure_future(self._retrying(self.delete_node))
        log.info("node %s removed: its device has been gone for %.0f s", self.name, limit)
        return True

    async def _retrying(self, action: Any) -> None:
        """API trouble is logged and retried on the next tick, never fatal for the node."""
        try:
            await action()
        except KubeApiError as exc:
            log.warning("node %s: %s", self.name, exc)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
