"""Claiming one device's Node for this gateway: create it, adopt it (ours, or unowned), or take it
over from another gateway once that gateway's Lease has expired; until then, refuse it with a log
line and a Warning event naming both gateways (two devices with one id).

Kept apart from NodeAgent, which decides when to claim and what owning the node starts (status
writes, Lease renewals), and from NodeLease, which reads and writes the Lease itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.node_lease import NodeLease
from gateway.kube.node_object import node_owner, node_path

log = logging.getLogger(__name__)


class NodeOwnership:
    """Makes gateway `owner` the owner of node `name`, or says how long another one keeps it."""

    def __init__(
        self,
        api: KubeApi,
        name: str,
        owner: str,
        lease: NodeLease,
        event: Callable[[str, str, str], None],
        *,
        look_again_s: float,
    ) -> None:
        self.api = api
        self.name = name
        self.owner = owner
        self.lease = lease  # read for the other owner's expiry; given the node's uid
        self._event = event  # (type, reason, message) of an event on the node
        self.refused_by: str | None = None  # the other gateway while we wait for its lease
        # After a race with another gateway (409 on create or adopt): look again this soon.
        self.look_again_s = look_again_s

    async def take(self, manifest: dict[str, Any], device_id: str) -> float | None:
        """Create the node, adopt it (ours, or unowned), or take it over once its owner's lease
        has expired. None: the node is ours now; otherwise the seconds to wait before asking
        again."""
        try:
            node = await self.api.get(node_path(self.name))
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            node = None
        if node is None:
            wait = await self._create(manifest)
        else:
            wait = await self._adopt(node, manifest, device_id)
        if wait is None:
            self.refused_by = None
        return wait

    async def _create(self, manifest: dict[str, Any]) -> float | None:
        """A new node, ours; else the seconds to wait before looking again."""
        try:
            created = await self.api.create("/api/v1/nodes", manifest)
        except KubeApiError as exc:
            if exc.conflict:  # another gateway created it a moment ago: look again
                return self.look_again_s
            raise
        self.lease.node_uid = created["metadata"]["uid"]
        log.info("node %s created (owner %s)", self.name, self.owner)
        self._event("Normal", "RegisteredNode", "node registered")
        return None

    async def _adopt(
        self, node: dict[str, Any], manifest: dict[str, Any], device_id: str
    ) -> float | None:
        """The existing node made ours (when its owner's lease has expired); else the seconds
        to wait before asking again."""
        previous = node_owner(node)
        if previous and previous != self.owner:
            wait = await self.lease.held_elsewhere_for()
            if wait is not None:
                self._refuse(previous, wait, device_id)
                return wait
        # The resourceVersion makes this a conditional update: of two gateways taking over
        # at once, one gets 409 and looks again.
        patch = {
            "metadata": {
                **manifest["metadata"],
                "resourceVersion": node["metadata"]["resourceVersion"],
            },
            "spec": manifest["spec"],
        }
        try:
            adopted = await self.api.patch(node_path(self.name), patch)
        except KubeApiError as exc:
            if exc.conflict:
                return self.look_again_s
            raise
        self.lease.node_uid = adopted["metadata"]["uid"]
        if previous and previous != self.owner:
            log.warning(
                "node %s: taken over from gateway %s, whose lease has expired",
                self.name,
                previous,
            )
            self._event(
                "Normal",
                "NodeTakenOver",
                f"gateway {self.owner} serves the node: gateway {previous} stopped renewing "
                "its lease",
            )
        else:
            log.info("node %s exists; adopted (owner %s)", self.name, self.owner)
        return None

    def _refuse(self, owner: str, wait: float, device_id: str) -> None:
        if self.refused_by != owner:
            log.warning(
                "node %s is served by gateway %s; this gateway (%s) does not serve device %s as "
                "that node until %s stops renewing the node's lease (%.0f s left). Two devices "
                "with one id? Give each device its own id.",
                self.name,
                owner,
                self.owner,
                device_id,
                owner,
                wait,
            )
            self._event(
                "Warning",
                "NodeOwnedElsewhere",
                f"gateway {self.owner} also has a device with id {device_id!r} and "
                f"does not serve it: the node belongs to gateway {owner} while it renews the "
                "node's lease",
            )
        self.refused_by = owner
