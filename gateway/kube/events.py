"""Events for `kubectl describe`: recorded without blocking the caller, repeats folded into a count.

Like the kubelet's recorder, an event that repeats (same object, reason and message) is patched
with a higher count and a new lastTimestamp instead of creating a new object.

A kubelet writes its events one at a time, for the ~100 pods of its node. A gateway serving 50
or 1000 nodes writes theirs, which one writer leaves minutes behind after a burst of pod starts
(a 1000-pod burst queues ~3000 events; ~50 a second at best). So one writer always runs, and
up to EXTRA_WRITERS more while no pod status write waits (`yield_to`): the status writes keep
the API server to themselves during a burst, and the events catch up as soon as it is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

# Event names are DNS subdomains: at most 253 bytes.
EVENT_NAME_MAX = 253

# Events waiting to be written; past this, new ones are dropped (and counted) rather than
# letting a flapping device grow memory without bound.
QUEUE_LIMIT = 10_000
COMPONENT = "wirelet"
# client-go's spam filter, which the kubelet's events pass: per object (and event type) 25 at
# once, then one per 5 minutes; repeats count too. A device that reboots in a loop or a pod
# crash-looping on it cannot spend the gateway's API budget, shared by every node, on events.
SPAM_BURST = 25
SPAM_REFILL_S = 300.0
SPAM_KEYS = 4096  # objects tracked, the least recently seen forgotten first (client-go's LRU)
EXTRA_WRITERS = 3  # writers beside the one that always runs, while status writes are idle
IDLE_CHECK_S = 0.1  # how often an extra writer looks whether status writes are idle again


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str = "v1"
    field_path: str = ""

    @staticmethod
    def pod(pod: dict[str, Any], container: str | None = None) -> ObjectRef:
        meta = pod["metadata"]
        path = f"spec.containers{{{container}}}" if container else ""
        return ObjectRef("Pod", meta["namespace"], meta["name"], meta["uid"], field_path=path)

    @staticmethod
    def node(name: str) -> ObjectRef:
        # The kubelet uses the node name as the node's uid in its own events.
        return ObjectRef("Node", "", name, name)


class SpamFilter:
    """A token bucket per object and event type (client-go's EventSourceObjectSpamFilter)."""

    def __init__(self, burst: int = SPAM_BURST, refill_s: float = SPAM_REFILL_S) -> None:
        self.burst = burst
        self.refill_s = refill_s
        self._buckets: dict[tuple[str, ...], tuple[float, float]] = {}  # key -> tokens, at
        self.filtered = 0

    def allows(self, obj: ObjectRef, kind: str) -> bool:
        key = (obj.kind, obj.namespace, obj.name, obj.uid, obj.api_version, kind)
        now = time.monotonic()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) / self.refill_s)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)  # now most recent
        if len(self._buckets) > SPAM_KEYS:
            self._buckets.pop(next(iter(self._buckets)))
        if not allowed:
            self.filtered += 1
        return allowed


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Queue events; background writers write them through the rate-limited client."""

    def __init__(self, api: KubeApi, host: str, *, extra_writers: int = EXTRA_WRITERS) -> None:
        self.api = api
        self.host = host
        self.queue: asyncio.Queue[tuple[ObjectRef, str, str, str, datetime]] = asyncio.Queue()
        self.written: dict[tuple[str, str, str], tuple[str, str, int]] = {}
        self.dropped = 0
        self.spam = SpamFilter()
        self.extra_writers = extra_writers
        self._busy: Callable[[], bool] = lambda: False
        # Repeats of one event wait for the write in flight, then count it up (not a 2nd event).
        self._writing: dict[tuple[str, str, str], asyncio.Future[None]] = {}
        self._taken = 0  # taken from the queue, not yet written (a repeat may wait its turn)
        self.in_flight = 0
        self.most_in_flight = 0  # for tests and benchmarks: the extra writers took part

    def yield_to(self, busy: Callable[[], bool]) -> None:
        """`busy()`: whether more important writes (pod statuses) wait; the extra writers do
        not start a write meanwhile."""
        self._busy = busy

    def record(self, obj: ObjectRef, kind: str, reason: str, message: str) -> None:
        """kind is "Normal" or "Warning"; never blocks, never raises."""
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1
            return
        if not self.spam.allows(obj, kind):
            log.debug("event %s for %s/%s filtered as spam", reason, obj.namespace, obj.name)
            return
        log.debug("event %s %s/%s %s: %s", kind, obj.namespace, obj.name, reason, message)
        self.queue.put_nowait((obj, kind, reason, message, datetime.now(UTC)))

    async def run(self) -> None:
        writers = [self._writer(always=True)]
        writers += [self._writer(always=False) for _ in range(self.extra_writers)]
        await asyncio.gather(*writers)

    async def _writer(self, *, always: bool) -> None:
        while True:
            # Polled (only while busy): the status queue is the pod controller's, not ours.
            while not always and self._busy():  # noqa: ASYNC110
                await asyncio.sleep(IDLE_CHECK_S)
            obj, kind, reason, message, when = await self.queue.get()
            self._taken += 1
            try:
                await self._write_one(obj, kind, reason, message, when)
            finally:
                self._taken -= 1

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being written."""
        return self.queue.empty() and not self._taken

    async def _write_one(
        self, obj: ObjectRef, kind: str, reason: str, message: str, when: datetime
    ) -> None:
        key = (obj.uid, reason, message)
        while (earlier := self._writing.get(key)) is not None:
            await asyncio.shield(earlier)  # a repeat: counted up once that one is written
        done = self._writing[key] = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self._write(obj, kind, reason, message, when)
        except KubeApiError as exc:
            log.warning(
                "could not record event %s for %s/%s: %s", reason, obj.namespace, obj.name, exc
            )
        finally:
            self.in_flight -= 1
            del self._writing[key]
            done.set_result(None)

    async def drain(self) -> None:
        """Write what is queued (used at shutdown and by tests)."""
        while not self.queue.empty():
            await self._write_one(*self.queue.get_nowait())

    async def _write(
        self, obj: ObjectRef, kind: str, reason: str, message: str, when: datetime
    ) -> None:
        namespace = obj.namespace or "default"
        key = (obj.uid, reason, message)
        previous = self.written.get(key)
        if previous is not None:
            ns, name, count = previous
            try:
                await self.api.patch(
                    f"/api/v1/namespaces/{ns}/events/{name}",
                    {"count": count + 1, "lastTimestamp": _stamp(when)},
                    kind="merge",
                )
                self.written[key] = (ns, name, count + 1)
                return
            except KubeApiError as exc:
                if not exc.not_found:
                    raise
        # As the kubelet: `<object name>.<unique suffix>`, the name cut so the whole stays a
        # valid 253-byte name (a 253-character pod name would otherwise lose all its events).
        prefix = obj.name[: EVENT_NAME_MAX - 17].rstrip("-.")
        name = f"{prefix}.{uuid.uuid4().hex[:16]}"
        involved: dict[str, Any] = {
            "kind": obj.kind,
            "name": obj.name,
            "uid": obj.uid,
            "apiVersion": obj.api_version,
        }
        if obj.namespace:
            involved["namespace"] = obj.namespace
        if obj.field_path:
            involved["fieldPath"] = obj.field_path
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT, "host": self.host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host,
            "firstTimestamp": _stamp(when),
            "lastTimestamp": _stamp(when),
            "count": 1,
        }
        await self.api.create(f"/api/v1/namespaces/{namespace}/events", body)
        self.written[key] = (namespace, name, 1)
        if len(self.written) > QUEUE_LIMIT:
            self.written.pop(next(iter(self.written)))
