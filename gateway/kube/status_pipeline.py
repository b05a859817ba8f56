"""Which pods' statuses are written, and when: the pod controller's status writes as a pipeline.

Each change to a pod (`add`) queues it in a `CoalescingQueue` (gateway.kube.coalescing_queue):
many changes to one pod within a short window become one write, at most one write per pod is
in flight, up to `writers` pods are written at once, and unchanged statuses are never sent. A
write that fails in a way a retry may pass is tried again with back-off (gateway.kube.api_retry).
How one write reaches the API server is gateway.kube.status_write's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from gateway.kube.api import KubeApiError
from gateway.kube.api_retry import retry_delay, retryable
from gateway.kube.coalescing_queue import CoalescingQueue
from gateway.kube.pod_state import PodState
from gateway.kube.status_write import StatusApi, StatusWriter, another_pod

log = logging.getLogger(__name__)

# Changes to a pod within this window are written as one status update.
STATUS_COALESCE_S = 0.05
# A pod's first status (ContainerCreating) waits this long for the change that usually follows
# within milliseconds (the device confirms the start): one write instead of two. A second change
# ends the wait and is written at once (no STATUS_COALESCE_S on top: every pod start paid it); a
# slow or refused start shows its waiting state after this long. In a burst of 1000 pod starts
# a confirmation took over 0.25 s for 10-18 % of pods, each then written twice into the
# API server everyone waits on.
STATUS_FIRST_COALESCE_S = 1.0
# Status writes in flight at once, at least; the gateway raises it with the devices it serves
# (`set_writers`), as each kubelet writes its own pods' statuses. A write waits for the
# API server (tens to hundreds of ms on a busy one), so with a fixed few in flight a thousand
# pod starts queue behind each other. The client's QPS limiter paces them further.
STATUS_WRITERS = 8

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class StatusPipeline:
    def __init__(
        self,
        api: StatusApi,
        pods: Mapping[str, PodState],
        status_of: Callable[[str], dict[str, Any] | None],
        spawn: Spawn,
    ) -> None:
        self.pods = pods
        self.status_of = status_of  # the pod's status now, None when there is none to write
        self.spawn = spawn
        # Pods whose status is to be written, by uid (pods yet without a status on record
        # wait STATUS_FIRST_COALESCE_S), at most one write per pod in flight.
        self.queue: CoalescingQueue[str] = CoalescingQueue(
            STATUS_COALESCE_S, STATUS_FIRST_COALESCE_S
        )
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # uid -> its status write
        self.writers = STATUS_WRITERS
        self._writer_slot_freed: asyncio.Event | None = None
        self.writer = StatusWriter(api)
        self.writes = 0
        self.skipped = 0

    def add(self, uid: str) -> None:
        """The pod's status may have changed: write it once its window has passed."""
        state = self.pods.get(uid)
        if state is None:
            return
        self.queue.add(uid, first=state.last_status is None)

    def forget(self, uid: str) -> None:
        self.queue.forget(uid)

    async def write(self, uid: str, body: dict[str, Any] | None = None) -> None:
        """Write `body`, or else the pod's status now, unless it is what was written last.
        Raises KubeApiError for a refusal a retry may pass, OSError or TimeoutError."""
        state = self.pods.get(uid)
        if state is None:
            return
        status = body if body is not None else self.status_of(uid)
        if status is None:
            return
        if state.last_status == status:
            self.skipped += 1
            return
        view = state.view
        try:
            state.stale_version = await self.writer.write(
                view, status, stale_version=state.stale_version
            )
        except KubeApiError as exc:
            if exc.not_found or another_pod(exc):
                return  # the pod is gone (or replaced by one of the same name)
            if not retryable(exc):
                # The same body would be refused again: say so once, write again only when
                # the status changes.
                log.error("status of pod %s refused: %s", view.key, exc)
                state.last_status = status
                return
            raise
        state.last_status = status
        self.writes += 1

    def write_soon(self, uid: str, body: dict[str, Any]) -> None:
        """Write `body` now, outside the queue (a status the runtime does not hold)."""
        self.spawn(self.write(uid, body), f"status {uid}")

    async def write_last(self, uid: str, final: dict[str, Any] | None) -> None:
        """The pod's last status before its object goes: after a write still in flight, which
        would otherwise land last with older states; a failure is left to the delete."""
        in_flight = self._in_flight.get(uid)
        if in_flight is not None:
            await asyncio.wait([in_flight])
        if final is not None:
            with contextlib.suppress(KubeApiError, OSError, TimeoutError):
                await self.write(uid, final)

    def waiting(self) -> bool:
        """Pod statuses queued or being written: the event writers beyond the first give way."""
        return len(self.queue) > 0 or bool(self._in_flight)

    def set_writers(self, count: int) -> None:
        """Allow `count` status writes in flight at once (never fewer than STATUS_WRITERS);
        writes already in flight finish when it shrinks."""
        self.writers = max(STATUS_WRITERS, count)
        if self._writer_slot_freed is not None:
            self._writer_slot_freed.set()

    async def run(self) -> None:
        """Write queued pods' statuses as a pipeline: each pod once its coalescing window has
        passed, oldest first, up to `writers` writes in flight, at most one per pod."""
        freed = self._writer_slot_freed = asyncio.Event()
        busy = 0

        def release(_task: asyncio.Task[None]) -> None:
            nonlocal busy
            busy -= 1
            freed.set()

        while True:
            while busy >= self.writers:
                freed.clear()
                await freed.wait()
            uid = await self.queue.get()
            busy += 1
            task = self.spawn(self._write_queued(uid), f"status {uid}")
            self._in_flight[uid] = task
            task.add_done_callback(release)
            task.add_done_callback(functools.partial(self._write_done, uid))

    def _write_done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(uid) is task:
            del self._in_flight[uid]

    async def _write_queued(self, uid: str) -> None:
        error: Exception | None = None
        try:
            await self.write(uid)
        except (KubeApiError, OSError, TimeoutError) as exc:
            error = exc
        state = self.pods.get(uid)
        if state is None or state.finishing:
            self.queue.done(uid)
            self.queue.forget(uid)
            return
        if error is not None:
            # Back off before the next attempt, whatever changes meanwhile (a change is
            # written by that attempt): a status write that keeps failing must not spin.
            delay = retry_delay(state.write_failures)
            state.write_failures += 1
            log.warning("status of pod %s: %s; again in %g s", uid, error, delay)
            self.queue.retry_after(uid, delay)
            return
        state.write_failures = 0
        self.queue.done(uid)

    def close(self) -> None:
        self.queue.close()
