"""One node's Lease in kube-node-lease: renewed for this gateway, and read to tell whether
another gateway still holds it.

The Lease is how a node proves it is alive and which gateway serves it: the node lifecycle
controller reads its renewTime, and a gateway may take over a node only once the owner's Lease
has expired (renewTime + leaseDurationSeconds in the past). Kept apart from NodeAgent, which
decides when to renew and what losing the node means.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.config import NodeConfig
from gateway.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
# Renewals tried in a row when the Lease changed under ours (409): each re-reads it first.
LEASE_CONFLICT_ATTEMPTS = 3


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def lease_remaining(lease: dict[str, Any], now: datetime) -> float:
    """Seconds until the lease expires (renewTime + leaseDurationSeconds); <= 0: expired."""
    spec = lease.get("spec") or {}
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int):
        return 0.0
    return (renewed + timedelta(seconds=duration) - now).total_seconds()


class NodeLease:
    """The Lease of node `name`, held in the name of gateway `owner`."""

    def __init__(self, api: KubeApi, name: str, owner: str, config: NodeConfig) -> None:
        self.api = api
        self.name = name
        self.owner = owner
        self.config = config
        # The node's uid, once known: the Lease names its node as owner, so it goes with it.
        self.node_uid: str | None = None
        # resourceVersion of the Lease as last written (None: read it, or create it, first).
        self._version: str | None = None
        self.renewals = 0
        self.conflicts = 0  # renewals refused with 409 (and tried again at once)

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"

    def forget(self) -> None:
        """Read the Lease again before the next renewal (the node was claimed or lost)."""
        self._version = None

    async def held_elsewhere_for(self) -> float | None:
        """Seconds another gateway's hold on the Lease still runs; None when it has expired, is
        ours, or the Lease is gone."""
        try:
            lease = await self.api.get(self.path)
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise
        if (lease.get("spec") or {}).get("holderIdentity") == self.owner:
            return None
        remaining = lease_remaining(lease, datetime.now(UTC))
        return remaining if remaining > 0 else None

    async def renew(self) -> str | None:
        """Renew (or create) the Lease: a merge patch of its spec carrying the resourceVersion
        last written, so a concurrent change still conflicts (409) as a full update would. A
        conflict re-reads the Lease and tries again at once, as the kubelet's lease controller
        does: waiting for the next interval would leave a gap of two in the renewals.

        Returns the other gateway that holds the Lease now (it has taken the node), else None.
        A deleted Lease raises KubeApiError (not found): its node may be gone with it."""
        now = datetime.now(UTC)
        for attempt in range(1, LEASE_CONFLICT_ATTEMPTS + 1):
            try:
                return await self._renew_once(now)
            except KubeApiError as exc:
                self._version = None  # re-read next time: a conflict or a deleted lease
                if exc.not_found or not exc.conflict:
                    raise
                self.conflicts += 1
                if attempt == LEASE_CONFLICT_ATTEMPTS:
                    log.warning(
                        "node %s: the lease changed under every one of %d renewals in a row "
                        "(409 Conflict); trying again at the next interval",
                        self.name,
                        attempt,
                    )
        return None

    async def _renew_once(self, now: datetime) -> str | None:
        version = self._version
        if version is None:
            try:
                lease = await self.api.get(self.path)
            except KubeApiError as exc:
                if not exc.not_found:
                    raise
                lease = await self.api.create(
                    f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases",
                    self._new_lease(now),
                )
                self._version = lease["metadata"]["resourceVersion"]
                self.renewals += 1
                return None
            holder: str = (lease.get("spec") or {}).get("holderIdentity") or ""
            if holder not in ("", self.owner, self.name) and lease_remaining(lease, now) > 0:
                return holder  # another gateway renews it: it has taken the node
            version = lease["metadata"]["resourceVersion"]
        patch = {
            "metadata": {"resourceVersion": version},
            "spec": self._spec(now),
        }
        lease = await self.api.patch(self.path, patch, kind="merge")
        self._version = lease["metadata"]["resourceVersion"]
        self.renewals += 1
        return None

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
            "spec": self._spec(now),
        }

    def _spec(self, now: datetime) -> dict[str, Any]:
        return {
            "holderIdentity": self.owner,
            "leaseDurationSeconds": self.config.lease_duration_s,
            "renewTime": micro_time(now),
        }
