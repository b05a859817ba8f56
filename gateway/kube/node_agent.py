"""One device's Node: claimed for this gateway, created (and re-created if deleted), status kept
current, Lease renewed.

Mirrors the kubelet's node status loop: the Ready condition follows the device link, status is
patched on change and at least every `status_interval_s`, and the Lease in kube-node-lease is
renewed every `lease_renew_interval_s` while the device answers (not while it is gone, so the
node lifecycle controller sees it as unreachable just as it would a powered-off machine).

A node belongs to one gateway at a time: the owner is recorded on the node (OWNER_ANNOTATION)
and holds its Lease. Another gateway with a device of the same id refuses to serve the node
(log line and Warning event naming both gateways) until the owner's Lease has expired, then
takes it over; a restarted gateway has the same identity and resumes at once. The agent
decides when; reading and writing the Lease is NodeLease's, the claim NodeOwnership's.

API trouble is retried with capped exponential back-off; an answer that no retry can change
(`KubeApiError.permanent`: 400, 403, 422, ...) ends the agent with an error and an event, so an
invalid object is sent a bounded number of times, never in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config import NodeConfig
from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.memory_pressure import MemoryPressure
from gateway.kube.node_lease import NodeLease
from gateway.kube.node_object import (
    NodeFacts,
    manifest_facts_metadata,
    memory_condition,
    node_manifest,
    node_owner,
    node_path,
    node_status,
    ready_condition,
)
from gateway.kube.node_ownership import NodeOwnership
from gateway.link.retry import Backoff, RetryPolicy

log = logging.getLogger(__name__)

# A renewal this much after its due time counts as late in the figures (scale benchmark).
LEASE_LATE_GRACE_S = 1.0
# Back-off between attempts after an API failure: from 0.5 s, doubling, at most 30 s (jittered).
API_BACKOFF = RetryPolicy(initial=0.5, maximum=30.0, jitter=0.5)


def renewal_delay(interval: float, first: bool, draw: Callable[[], float] = random.random) -> float:
    """Seconds until the next lease renewal. The first after the link comes up waits a random
    half to whole interval: devices that came up together (a gateway's start, a USB hub
    plugged in) would otherwise renew in one burst every interval for as long as they run."""
    return interval * (0.5 + 0.5 * draw()) if first else interval


def status_report_delay(
    interval: float, changed: bool, draw: Callable[[], float] = random.random
) -> float:
    """Seconds until node status is re-posted unchanged. After a write for a change, a random
    half to whole interval; after an unchanged re-post, the whole interval. Nodes whose status
    changed together (1000 devices coming up at a gateway's start) would otherwise re-post all
    at once every interval from then on: a burst of 1000 writes every 5 minutes, which delays
    the lease renewals queued behind it."""
    return renewal_delay(interval, changed, draw)


class NodeAgent:
    """Keeps one Node and its Lease in step with one device's link, while this gateway owns it."""

    def __init__(
        self,
        api: KubeApi,
        name: str,
        facts: NodeFacts,
        config: NodeConfig,
        *,
        node_ip: str,
        kubelet_port: int,
        owner: str = "",
        events: EventRecorder | None = None,
        on_owned: Callable[[], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        memory_of: Callable[[], tuple[int, int] | None] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.name = name
        self.facts = facts
        self.config = config
        self.node_ip = node_ip
        self.kubelet_port = kubelet_port
        self.owner = owner or name  # this gateway's identity
        self.events = events
        self.on_owned = on_owned  # called when this gateway becomes the node's owner
        self.on_lost = on_lost  # called with the new owner when another gateway took the node
        # The device's memory in use and total (bytes) as last reported, None if unknown: read
        # at every lease renewal, as the kubelet's eviction manager samples every 10 s.
        self.memory_of = memory_of
        self.memory = MemoryPressure(config.memory_pressure_percent, config.pressure_transition_s)
        self.link_up = False
        self.reason = "DeviceConnecting"
        self.message = "waiting for the device's handshake"
        self.since = datetime.now(UTC)
        self.boot = self.since
        self.owned = False
        self.failed: str | None = None  # the permanent API error that stopped this agent
        self.lease = NodeLease(api, name, self.owner, config)
        self.ownership = NodeOwnership(
            api, name, self.owner, self.lease, self._event, look_again_s=API_BACKOFF.initial
        )
        self._wake = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None  # the loop's sleep, cut short by _signal
        # The status as last written but for its conditions (None: write everything next time).
        self._status_rest: dict[str, Any] | None = None
        self._draw = draw  # spreads re-posts after a change (status_report_delay)
        self.status_written_at: float | None = None  # loop time of the last status write
        self.status_due = 0.0  # loop time of the next unchanged re-post
        self._next_lease: float | None = None  # None while the link is down: no renewals
        self._went_down = False  # the link was up once and is down now
        self._recheck_owner = False  # link back up: someone may have taken the node meanwhile
        self.status_writes = 0
        self.lease_late = 0  # renewals made later than the renew interval plus a grace
        self.removed = False  # deleted after nodes.remove_after_s without its device
        self._down_since: float | None = None
        self._pending_removal: asyncio.Future[None] | None = None
        # The facts' labels and annotations as the node has them (set when it is claimed).
        self._written_metadata: dict[str, dict[str, str]] | None = None

    @property
    def _path(self) -> str:
        return node_path(self.name)

    # --- inputs -------------------------------------------------------------------------------

    def set_link(self, up: bool, reason: str, message: str) -> None:
        """Called by the device side whenever the link goes up or down."""
        if up != self.link_up:
            # Down long enough for our lease to expire: another gateway may own the node now.
            if up and self._lease_may_have_expired():
                self._recheck_owner = True
            self._went_down = not up
            self.since = datetime.now(UTC)
            if self.events and self.owned:
                kind = "Normal" if up else "Warning"
                self.events.record(
                    ObjectRef.node(self.name), kind, "NodeReady" if up else "NodeNotReady", message
                )
        changed = (up, reason, message) != (self.link_up, self.reason, self.message)
        self.link_up, self.reason, self.message = up, reason, message
        if changed:
            self._signal()

    def set_facts(self, facts: NodeFacts) -> None:
        """The device's facts from its latest handshake. A new boot id is the kubelet's
        `Rebooted` event; changed firmware, apps or capacity reach the node's labels and
        status with the next write."""
        if facts == self.facts:
            return
        if self.facts.boot_id and facts.boot_id != self.facts.boot_id:
            self._event(
                "Warning",
                "Rebooted",
                f"Node {self.name} has been rebooted, boot id: {facts.boot_id:08x}",
            )
        self.facts = facts
        self._signal()

    def _check_memory(self) -> None:
        reading = self.memory_of() if self.memory_of is not None else None
        if reading is None or not self.memory.observe(*reading):
            return
        state = "NodeHasInsufficientMemory" if self.memory.pressure else "NodeHasSufficientMemory"
        self._event("Normal", state, f"Node {self.name} status is now: {state}")
        self._signal()  # written at once, as any change

    def _signal(self) -> None:
        self._wake.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- ownership ----------------------------------------------------------------------------

    async def claim(self) -> float | None:
        """Make this gateway the node's owner: create the node, adopt it (ours, or unowned), or
        take it over once its owner's lease has expired. None: owned now (status written);
        otherwise the seconds to wait before asking again."""
        facts = self.facts
        manifest = node_manifest(self.name, facts, self.config, owner=self.owner)
        wait = await self.ownership.take(manifest, facts.device_id)
        if wait is not None:
            return wait
        self.lease.forget()
        self._status_rest = None
        self._written_metadata = manifest_facts_metadata(manifest)
        if not self.owned:
            self.owned = True
            # The kubelet's "Starting kubelet." when it starts serving the node.
            self._event("Normal", "Starting", f"Starting wirelet for device {self.facts.device_id}")
            if self.link_up:  # set_link records changes only once the node is ours
                self._event("Normal", "NodeReady", self.message or "device link up")
            if self.on_owned is not None:
                self.on_owned()
        if self.facts is facts:  # else the new facts' labels still need their write
            self._wake.clear()  # this write carries every change so far
        await self.write_status()
        return None

    def _lose(self, owner: str) -> None:
        """Another gateway took the node (our lease had expired): stop serving it."""
        if not self.owned:
            return
        self.owned = False
        self.lease.forget()
        log.warning(
            "node %s was taken over by gateway %s; this gateway (%s) stops serving it",
            self.name,
            owner,
            self.owner,
        )
        if self.on_lost is not None:
            self.on_lost(owner)

    def _event(self, kind: str, reason: str, message: str) -> None:
        if self.events:
            self.events.record(ObjectRef.node(self.name), kind, reason, message)

    # --- API writes ---------------------------------------------------------------------------

    async def ensure_node(self) -> None:
        """Create the node again (deleted while its device is attached), or adopt it."""
        wait = await self.claim()
        if wait is not None:
            self._lose(self.ownership.refused_by or "?")

    async def write_status(self, *, changed: bool = True) -> None:
        """Patch the node's status; `changed=False`: the periodic re-post of an unchanged one."""
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
            memory=(
                memory_condition(self.memory.pressure, self.memory.message, now, self.memory.since)
                if self.memory_of is not None and self.memory.percent > 0
                else None
            ),
        )
        # Like the kubelet's two-way patch: when only the conditions (their heartbeat times)
        # changed since the last write, send only them (merged by type); the Node is the same.
        rest = {key: value for key, value in status.items() if key != "conditions"}
        body = {"conditions": status["conditions"]} if rest == self._status_rest else status
        self._status_rest = None  # unknown until this write succeeds
        try:
            node = await self.api.patch(f"{self._path}/status", {"status": body})
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            await self._deleted_while_attached()
            return
        self._status_rest = rest
        now_loop = asyncio.get_running_loop().time()
        self.status_writes += 1
        self.status_written_at = now_loop
        self.status_due = now_loop + status_report_delay(
            self.config.status_interval_s, changed, self._draw
        )
        owner = node_owner(node)
        if owner and owner != self.owner:
            self._lose(owner)

    async def _write_metadata(self) -> None:
        """Labels and annotations made from the device's facts, when they changed since the
        node was claimed (new firmware): a merge patch, with labels no longer made removed."""
        written = self._written_metadata
        if written is None:
            return
        manifest = node_manifest(self.name, self.facts, self.config, owner=self.owner)
        current = manifest_facts_metadata(manifest)
        if current == written:
            return
        patch: dict[str, dict[str, str | None]] = {}
        for part in ("labels", "annotations"):
            old, new = written[part], current[part]
            changed: dict[str, str | None] = {
                key: value for key, value in new.items() if old.get(key) != value
            }
            changed.update({key: None for key in old if key not in new})
            if changed:
                patch[part] = changed
        await self.api.patch(self._path, {"metadata": patch}, kind="merge")
        self._written_metadata = current

    async def renew_lease(self) -> None:
        """Renew the Lease (see NodeLease.renew); stop serving if another gateway holds it."""
        try:
            holder = await self.lease.renew()
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            # The garbage collector deletes the lease with its node: check the node too.
            await self._ensure_node_exists()
            return
        if holder is not None:
            self._lose(holder)

    async def _ensure_node_exists(self) -> None:
        try:
            node = await self.api.get(self._path)
            self.lease.node_uid = node["metadata"]["uid"]
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            await self._deleted_while_attached()

    async def _deleted_while_attached(self) -> None:
        log.warning(
            "node %s was deleted while its device is attached; creating it again", self.name
        )
        await self.ensure_node()

    async def still_owner(self) -> bool:
        """Read the node's owner; another gateway's name there means it took the node over."""
        try:
            node = await self.api.get(self._path)
        except KubeApiError as exc:
            if exc.not_found:
                return True  # gone: ours to create again
            raise
        owner = node_owner(node)
        if owner and owner != self.owner:
            self._lose(owner)
            return False
        return True

    def _lease_may_have_expired(self) -> bool:
        """Down this long, our lease may have expired and another gateway taken the node."""
        takeover_possible = self.config.lease_duration_s - self.config.lease_renew_interval_s
        down_for = (datetime.now(UTC) - self.since).total_seconds()
        return not self.link_up and self._went_down and down_for >= takeover_possible

    async def delete_node(self) -> None:
        if not await self.still_owner():
            return
        try:
            await self.api.delete(self._path)
        except KubeApiError as exc:
            if not exc.not_found:
                raise

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim the node, then keep it: status on change and every status interval, lease
        every renew interval while up. Failures back off; permanent ones end the agent."""
        backoff = Backoff(API_BACKOFF)
        while True:
            try:
                if self.owned:
                    await self._serve_once()
                else:
                    wait = await self.claim()
                    if wait is not None:
                        await asyncio.sleep(max(wait, API_BACKOFF.initial))
                        continue
                backoff.reset()
            except KubeApiError as exc:
                if exc.permanent:
                    self._give_up(exc)
                    return
                delay = backoff.next_delay()
                level = logging.WARNING if backoff.failures == 1 else logging.DEBUG
                log.log(level, "node %s: %s; retrying in %.1f s", self.name, exc, delay)
                await asyncio.sleep(delay)

    def _give_up(self, exc: KubeApiError) -> None:
        self.failed = str(exc)
        log.error(
            "node %s: the API server refuses it (%s); no retry can change that, so device %s is "
            "not served as a node. Fix the cause (config, RBAC) and restart the gateway.",
            self.name,
            exc,
            self.facts.device_id,
        )
        self._event("Warning", "NodeRefused", f"the API server refuses the node: {exc}")

    async def _serve_once(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._remove_if_gone_too_long(now):
            await self._wake.wait()  # nothing to do until the device is back
            return
        if self.removed:
            await self.ensure_node()
            self.removed = False
        if self._recheck_owner:
            self._recheck_owner = False
            await self.ensure_node()  # another gateway may have taken the node while we were down
            if not self.owned:
                return
        if self._wake.is_set() or now >= self.status_due:
            changed = self._wake.is_set()
            self._wake.clear()
            # A stale NotReady must not overwrite the status of the gateway that took over.
            if self._lease_may_have_expired() and not await self.still_owner():
                return
            await self._write_metadata()
            await self.write_status(changed=changed)
        if not self.owned:
            return
        if not self.link_up:
            self._next_lease = None
        elif self._next_lease is None or now >= self._next_lease:
            if self._next_lease is not None and now - self._next_lease > LEASE_LATE_GRACE_S:
                self.lease_late += 1
            first = self._next_lease is None
            self._check_memory()
            await self.renew_lease()
            self._next_lease = now + renewal_delay(self.config.lease_renew_interval_s, first)
        deadline = self.status_due
        if self._next_lease is not None:
            deadline = min(deadline, self._next_lease)
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

    async def _retrying(self, action: Callable[[], Awaitable[None]]) -> None:
        """Until done, with back-off; a permanent refusal is logged once and ends it."""
        backoff = Backoff(API_BACKOFF)
        while True:
            try:
                await action()
                return
            except KubeApiError as exc:
                if exc.permanent:
                    log.error("node %s: %s", self.name, exc)
                    return
                delay = backoff.next_delay()
                log.warning("node %s: %s; retrying in %.1f s", self.name, exc, delay)
                await asyncio.sleep(delay)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
