"""A keyed queue that coalesces: many changes to one key within a short window come out once.

The pod controller's status writes go through it (a key is a pod's uid), as client-go's work
queue and kopf's per-object queues serve their controllers:

- a key is queued at most once, however often it is added, and comes out once its window (from
  the first add since it last came out) has passed, oldest first;
- a key being processed is never handed out again: changes meanwhile are remembered and queued
  once `done` is called, so there is at most one write per key in flight;
- a key with nothing on record yet (`first=True`) waits a longer window, cut short by the next
  add, so the change that usually follows within milliseconds is folded in; that add makes the
  key due at once (it has waited already: the kubelet's status manager, too, writes a change as
  soon as it is told of it), ahead of keys still in their window;
- `retry_after` hands a key out again after a back-off, whatever changes meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class CoalescingQueue(Generic[K]):
    def __init__(self, window_s: float, first_window_s: float) -> None:
        self.window_s = window_s
        self.first_window_s = first_window_s
        # Key -> loop time of its first add since it last came out, oldest first.
        self._queued: dict[K, float] = {}
        self._queued_first: dict[K, float] = {}  # keys with nothing on record yet
        self._due: dict[K, None] = {}  # keys due now (a first add's follow-up), in order
        self._processing: set[K] = set()
        self._again: dict[K, float] = {}  # processing keys added meanwhile
        self._retries: dict[K, asyncio.TimerHandle] = {}
        self._waiter: asyncio.Future[None] | None = None

    def __contains__(self, key: object) -> bool:
        return key in self._queued or key in self._queued_first or key in self._due

    def __len__(self) -> int:
        return len(self._queued) + len(self._queued_first) + len(self._due)

    def processing(self, key: K) -> bool:
        """Handed out and not yet done (or waiting for its retry)."""
        return key in self._processing

    def add(self, key: K, *, first: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        if key in self._processing:
            self._again.setdefault(key, now)
            return
        if key in self._queued or key in self._due:
            return
        if self._queued_first.pop(key, None) is not None:
            self._due[key] = None  # the change that follows the first: both in one go, now
        elif first:
            self._queued_first[key] = now
        else:
            self._queued[key] = now
        self._wake()

    async def get(self) -> K:
        """The key whose window ends first, once it has ended; it is processing until `done`."""
        loop = asyncio.get_running_loop()
        while True:
            if self._due:
                key = next(iter(self._due))
                del self._due[key]
                self._processing.add(key)
                return key
            due: float | None = None
            queue: dict[K, float] | None = None
            for candidate, window in (
                (self._queued, self.window_s),
                (self._queued_first, self.first_window_s),
            ):
                if candidate:
                    since = next(iter(candidate.values()))
                    if due is None or since + window < due:
                        due, queue = since + window, candidate
            if queue is not None and due is not None and due <= loop.time():
                key = next(iter(queue))
                del queue[key]
                self._processing.add(key)
                return key
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_at(due, _resolve, waiter) if due is not None else None
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._waiter = None

    def done(self, key: K) -> None:
        """Processed: a change that came meanwhile queues the key again."""
        self._processing.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self._queued.setdefault(key, again)
            self._wake()

    def retry_after(self, key: K, delay_s: float) -> None:
        """Processing failed: hand the key out again after `delay_s` (changes meanwhile are
        covered by that attempt), and not before, so a key that keeps failing cannot spin."""
        self._again.pop(key, None)
        self._retries[key] = asyncio.get_running_loop().call_later(delay_s, self._retry, key)

    def _retry(self, key: K) -> None:
        del self._retries[key]
        self._processing.discard(key)
        self._again.pop(key, None)
        self._queued.setdefault(key, asyncio.get_running_loop().time())
        self._wake()

    def forget(self, key: K) -> None:
        """Drop the key's pending adds and retry (a key being processed stays so until done)."""
        self._queued.pop(key, None)
        self._queued_first.pop(key, None)
        self._due.pop(key, None)
        self._again.pop(key, None)
        retry = self._retries.pop(key, None)
        if retry is not None:
            retry.cancel()
            self._processing.discard(key)

    def close(self) -> None:
        for retry in self._retries.values():
            retry.cancel()
        self._retries.clear()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
