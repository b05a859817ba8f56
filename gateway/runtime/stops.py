"""Stopping device tasks until the device confirms: a STOP that gets no answer, meets a busy
link or an error is sent again with back-off; while the link is down it waits for it (the
device may still run the task: a reboot ends it as lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.errors import DeviceRejected, SessionClosed, WireletError
from gateway.runtime.records import DeviceTasks

log = logging.getLogger(__name__)

# A stop the device has not confirmed (no answer in time, link busy, an error) is sent again
# after this back-off, doubling, until the device reports the task gone or is gone itself.
STOP_RETRY_INITIAL_S = 0.2
STOP_RETRY_MAX_S = 10.0

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


@dataclass
class _Stop:
    """A stop in progress for one task: its grace period and the task that retries it."""

    grace_s: float
    task: asyncio.Task[None] | None = None


class TaskStops:
    """One device's stops in progress, by task id, until the device confirms each."""

    def __init__(
        self,
        device: DeviceTasks,
        link_up: asyncio.Event,
        spawn: Spawn,
        *,
        already_gone: Callable[[str], Awaitable[None]],
        label: str = "",
    ) -> None:
        self.device = device
        self.link_up = link_up
        self.spawn = spawn
        # The device answered NO_SUCH_TASK: its end is recorded from what the device knows.
        self.already_gone = already_gone
        self.label = label
        self.pending: dict[str, _Stop] = {}

    def __contains__(self, task_id: str) -> bool:
        return task_id in self.pending

    def request(self, task_id: str, grace_s: float) -> None:
        """Stop `task_id` and keep at it until the device confirms (see `_until_gone`).
        Asking again changes nothing, unless with a shorter grace period (e.g. `--now`)."""
        current = self.pending.get(task_id)
        if current is not None:
            if grace_s >= current.grace_s:
                return
            if current.task is not None:
                current.task.cancel()
        stop = _Stop(grace_s)
        self.pending[task_id] = stop
        stop.task = self.spawn(self._until_gone(task_id, stop), f"stop {task_id}")

    def confirmed(self, task_id: str) -> None:
        """The device reported the task gone: no more STOPs for it."""
        stop = self.pending.pop(task_id, None)
        if stop is not None and stop.task is not None and stop.task is not asyncio.current_task():
            stop.task.cancel()

    async def _until_gone(self, task_id: str, stop: _Stop) -> None:
        """Send STOP until the device reports the task gone: its exit report (TASK_EXITED, also
        delivered as an event), or NO_SUCH_TASK (gone already). No answer in time, a full link
        queue or any other error: try again with back-off. While the link is down, wait for it."""
        delay = STOP_RETRY_INITIAL_S
        attempt = 0
        try:
            while self.pending.get(task_id) is stop:
                await self.link_up.wait()
                attempt += 1
                try:
                    await self.device.stop_task(task_id, stop.grace_s)
                    return
                except SessionClosed:
                    return
                except DeviceRejected as exc:
                    if exc.code == "NO_SUCH_TASK":
                        await self.already_gone(task_id)
                        return
                    problem = str(exc)
                except WireletError as exc:
                    problem = str(exc)
                log.warning(
                    "%s: stop of %s not confirmed (attempt %d): %s; again in %g s",
                    self.label,
                    task_id,
                    attempt,
                    problem,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, STOP_RETRY_MAX_S)
        finally:
            if self.pending.get(task_id) is stop:
                del self.pending[task_id]
