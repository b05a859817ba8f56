"""Requests in flight: their ids, the reply each expects, and who waits for it.

Pure bookkeeping (no I/O, no event loop): the session registers a waiter before it sends a
request and removes it in `finally`; every message from the device is asked "whose reply is
this?". A reply counts only if its request id is in flight **and** it is of the kind that
request expects (or an ERROR): a device re-sends replies meant for an earlier gateway session
after a restart, and one of those may carry an id in use again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import firmware_protocol as wire

W = TypeVar("W")

# The success reply of each request (ERROR is the other possible answer).
REPLY_TO: dict[type[wire.Message], type[wire.Message]] = {
    wire.StartTask: wire.TaskStarted,
    wire.StopTask: wire.TaskExited,
    wire.ListTasks: wire.TaskList,
    wire.Exec: wire.ExecResult,
}

_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Pending(Generic[W]):
    expects: type[wire.Message]
    waiter: W


class RequestRegistry(Generic[W]):
    """Request ids and their waiters (`W`: whatever the caller waits on, e.g. a future)."""

    def __init__(self, first_id: int) -> None:
        # Ids start at a random point per session (the caller picks it), so replies a device
        # re-sends from an earlier gateway session rarely carry an id in use.
        if not 1 <= first_id <= _U32_MAX:
            raise ValueError(f"first request id {first_id} is not a non-zero u32")
        self._next_id = first_id
        self._pending: dict[int, Pending[W]] = {}

    def new_id(self) -> int:
        """The next request id: u32, never 0 (0 means "not a reply")."""
        rid = self._next_id
        self._next_id = rid % _U32_MAX + 1
        return rid

    def add(self, request: wire.Message, waiter: W) -> None:
        """Register `request` (built with an id from `new_id`) before it is sent: the reply
        can arrive before the send returns."""
        rid: int = getattr(request, "request_id", 0)
        if rid == 0:
            raise ValueError(f"{type(request).__name__} carries no request id")
        self._pending[rid] = Pending(REPLY_TO[type(request)], waiter)

    def remove(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def waiter_for_reply(self, message: wire.Message) -> W | None:
        """The waiter `message` answers, or None if it answers none of ours."""
        rid: int = getattr(message, "request_id", 0)
        pending = self._pending.get(rid) if rid else None
        if pending is None or not isinstance(message, (pending.expects, wire.Error)):
            return None
        return pending.waiter

    def waiters_of(self, request_ids: Iterable[int]) -> list[W]:
        """Waiters of those request ids that are in flight (e.g. requests a reboot voided)."""
        return [self._pending[rid].waiter for rid in set(request_ids) if rid in self._pending]

    def waiters(self) -> list[W]:
        return [p.waiter for p in self._pending.values()]

    def __len__(self) -> int:
        return len(self._pending)
