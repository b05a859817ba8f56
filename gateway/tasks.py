"""Background tasks with one owner: named, referenced until done, failures logged, stopped in order.

asyncio keeps only a weak reference to a running task, so a task nobody holds can vanish
mid-flight, and an exception nobody awaits is reported only when the task is collected (if
ever). Every part of the gateway that starts work in the background does it through a
`TaskSet`: the set holds each task until it ends, logs a failure at once with the task's name,
and `stop()` cancels what still runs, newest first, waiting for each before the next, so a task
never outlives what it was started after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """The background tasks of one owner (`owner` prefixes every task's name)."""

    def __init__(self, owner: str = "") -> None:
        self.owner = owner
        self._running: dict[asyncio.Task[Any], None] = {}  # a dict keeps the start order

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=f"{self.owner}:{name}" if self.owner else name)
        self._running[task] = None
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._running)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._running))

    async def stop(self) -> None:
        """Cancel every running task, newest first, each awaited before the next is cancelled.

        Tasks spawned while stopping are stopped too. A task that ignores cancellation holds
        the stop up: that is a bug in the task."""
        while self._running:
            task = next(reversed(self._running))
            task.cancel()
            await asyncio.wait([task])  # its failure, if any, is logged by _reap
