"""One device's Node: claimed for this gateway, created (and re-created if deleted), status kept
current, Lease renewed.

Mirrors the kubelet's node status loop: the Ready condition follows the device link, status is
patched on change and at least every `status_interval_s`, and the Lease in kube-node-lease is
renewed every `lease_renew_interval_s` while the device answers (not while it is gone, so the
node lifecycle controller sees it as unreachable just as it would a powered-off machine).

A node belongs to one gateway at a time: the owner is recorded on the node (OWNER_ANNOTATION)
and holds its Lease. Another gateway with a device of the same id refuses to serve the node
(log line and Warning event naming both gateways) until the owner's Lease has expired, then
takes it over; a restarted gateway has the same identity and resumes at once.

API trouble is retried with capped exponential back-off; an answer that no retry can change
(`KubeApiError.permanent`: 400, 403, 422, ...) ends the agent with an error and an event, so an
invalid object is sent a bounded number of times, never in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.config import NodeConfig
from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.memory_pressure import MemoryPressure
from gateway.kube.node_object import (
    OWNER_ANNOTATION,
    NodeFacts,
    memory_condition,
    node_manifest,
    node_status,
    ready_condition,
)
from gateway.link.retry import Backoff, RetryPolicy

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
# A renewal this much after its due time counts as late in the figures (scale benchmark).
LEASE_LATE_GRACE_S = 1.0
# Renewals tried in a row when the Lease changed under ours (409): each re-reads it first.
LEASE_CONFLICT_ATTEMPTS = 3
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
        self.node_uid: str | None = None
        self.owned = False
        self.refused_by: str | None = None  # the other gateway while we wait for its lease
        self.failed: str | None = None  # the permanent API error that stopped this agent
        # resourceVersion of our Lease as last written (None: read it, or create it, first).
        self._lease_version: str | None = None
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
        self.lease_renewals = 0
        self.lease_conflicts = 0  # renewals refused with 409 (and tried again at once)
        self.lease_late = 0  # renewals made later than the renew interval plus a grace
        self.removed = False  # deleted after nodes.remove_after_s without its device
        self._down_since: float | None = None
        self._pending_removal: asyncio.Future[None] | None = None
        # The facts' labels and annotations as the node has them (set when it is claimed).
        self._written_metadata: dict[str, dict[str, str]] | None = None

    @property
    def _path(self) -> str:
        return f"/api/v1/nodes/{self.name}"

    @property
    def _lease_path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"

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
        try:
            node = await self.api.get(self._path)
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            node = None
        wait = await (self._create(manifest) if node is None else self._adopt(node, manifest))
        if wait is not None:
            return wait
        self._lease_version = None
        self._status_rest = None
        self._written_metadata = manifest_facts_metadata(manifest)
        self.refused_by = None
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

    async def _create(self, manifest: dict[str, Any]) -> float | None:
        """A new node, ours; else the seconds to wait before looking again."""
        try:
            created = await self.api.create("/api/v1/nodes", manifest)
        except KubeApiError as exc:
            if exc.conflict:  # another gateway created it a moment ago: look again
                return API_BACKOFF.initial
            raise
        self.node_uid = created["metadata"]["uid"]
        log.info("node %s created (owner %s)", self.name, self.owner)
        self._event("Normal", "RegisteredNode", "node registered")
        return None

    async def _adopt(self, node: dict[str, Any], manifest: dict[str, Any]) -> float | None:
        """The existing node made ours (when its owner's lease has expired); else the seconds
        to wait before asking again."""
        meta = node.get("metadata") or {}
        previous = (meta.get("annotations") or {}).get(OWNER_ANNOTATION) or ""
        if previous and previous != self.owner:
            wait = await self._owner_alive_for(previous)
            if wait is not None:
                self._refuse(previous, wait)
                return wait
        # The resourceVersion makes this a conditional update: of two gateways taking over
        # at once, one gets 409 and looks again.
        patch = {
            "metadata": {**manifest["metadata"], "resourceVersion": meta["resourceVersion"]},
            "spec": manifest["spec"],
        }
        try:
            adopted = await self.api.patch(self._path, patch)
        except KubeApiError as exc:
            if exc.conflict:
                return API_BACKOFF.initial
            raise
        self.node_uid = adopted["metadata"]["uid"]
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

    async def _owner_alive_for(self, owner: str) -> float | None:
        """Seconds the other owner's lease still runs; None when it has expired (or is gone)."""
        try:
            lease = await self.api.get(self._lease_path)
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise
        if (lease.get("spec") or {}).get("holderIdentity") == self.owner:
            return None
        remaining = lease_remaining(lease, datetime.now(UTC))
        return remaining if remaining > 0 else None

    def _refuse(self, owner: str, wait: float) -> None:
        if self.refused_by != owner:
            log.warning(
                "node %s is served by gateway %s; this gateway (%s) does not serve device %s as "
                "that node until %s stops renewing the node's lease (%.0f s left). Two devices "
                "with one id? Give each device its own id.",
                self.name,
                owner,
                self.owner,
                self.facts.device_id,
                owner,
                wait,
            )
            self._event(
                "Warning",
                "NodeOwnedElsewhere",
                f"gateway {self.owner} also has a device with id {self.facts.device_id!r} and "
                f"does not serve it: the node belongs to gateway {owner} while it renews the "
                "node's lease",
            )
        self.refused_by = owner

    def _lose(self, owner: str) -> None:
        """Another gateway took the node (our lease had expired): stop serving it."""
        if not self.owned:
            return
        self.owned = False
        self._lease_version = None
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
            self._lose(self.refused_by or "?")

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
        owner = ((node.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION)
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
        """Renew (or create) the Lease: a merge patch of its spec carrying the resourceVersion
        last written, so a concurrent change still conflicts (409) as a full update would. A
        conflict re-reads the Lease and tries again at once, as the kubelet's lease controller
        does: waiting for the next interval would leave a gap of two in the renewals."""
        now = datetime.now(UTC)
        for attempt in range(1, LEASE_CONFLICT_ATTEMPTS + 1):
            try:
                await self._renew_once(now)
                return
            except KubeApiError as exc:
                self._lease_version = None  # re-read next time: a conflict or a deleted lease
                if exc.not_found:
                    # The garbage collector deletes the lease with its node: check the node too.
                    await self._ensure_node_exists()
                    return
                if not exc.conflict:
                    raise
                self.lease_conflicts += 1
                if attempt == LEASE_CONFLICT_ATTEMPTS:
                    log.warning(
                        "node %s: the lease changed under every one of %d renewals in a row "
                        "(409 Conflict); trying again at the next interval",
                        self.name,
                        attempt,
                    )

    async def _renew_once(self, now: datetime) -> None:
        version = self._lease_version
        if version is None:
            try:
                lease = await self.api.get(self._lease_path)
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
            holder = (lease.get("spec") or {}).get("holderIdentity") or ""
            if holder not in ("", self.owner, self.name) and lease_remaining(lease, now) > 0:
                self._lose(holder)  # another gateway renews it: it has taken the node
                return
            version = lease["metadata"]["resourceVersion"]
        patch = {
            "metadata": {"resourceVersion": version},
            "spec": {
                "holderIdentity": self.owner,
                "leaseDurationSeconds": self.config.lease_duration_s,
                "renewTime": micro_time(now),
            },
        }
        lease = await self.api.patch(self._lease_path, patch, kind="merge")
        self._lease_version = lease["metadata"]["resourceVersion"]
        self.lease_renewals += 1

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
                "holderIdentity": self.owner,
                "leaseDurationSeconds": self.config.lease_duration_s,
                "renewTime": micro_time(now),
            },
        }

    async def _ensure_node_exists(self) -> None:
        try:
            node = await self.api.get(self._path)
            self.node_uid = node["metadata"]["uid"]
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
        owner = ((node.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION)
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


def manifest_facts_metadata(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The labels and annotations of a node manifest (what the device's facts decide)."""
    meta = manifest["metadata"]
    return {
        "labels": dict(meta.get("labels") or {}),
        "annotations": {
            key: value
            for key, value in (meta.get("annotations") or {}).items()
            if key != OWNER_ANNOTATION
        },
    }
