"""Session events to whoever listens: subscriptions (async iterators) and one callback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from gateway.errors import LinkTimeout
from gateway.link.events import SessionEvent


class EventSubscription:
    """An async iterator over session events from the moment it was created until close."""

    def __init__(self, unsubscribe: Callable[[EventSubscription], None]) -> None:
        self._queue: asyncio.Queue[SessionEvent | None] = asyncio.Queue()
        self._unsubscribe = unsubscribe
        self._closed = False  # no more events will be queued (the end marker is)

    def _put(self, event: SessionEvent | None) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[SessionEvent]:
        return self

    async def __anext__(self) -> SessionEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:  # the end marker queued by close()
            raise StopAsyncIteration
        return event

    async def get(self, timeout_s: float | None = None) -> SessionEvent:
        """Next event, with an optional bound (raises `LinkTimeout`)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.__anext__()
        except TimeoutError:
            raise LinkTimeout(f"no session event within {timeout_s} s") from None

    def close(self) -> None:
        """Stop receiving events; iteration ends after the ones already queued. Idempotent."""
        if self._closed:
            return
        self._put(None)
        self._closed = True
        self._unsubscribe(self)


class EventFanout:
    """Every event to each subscription (queued, unbounded) and to `on_event` (synchronously;
    an exception in it is logged, never fatal to the link)."""

    def __init__(
        self,
        on_event: Callable[[SessionEvent], None] | None,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self._on_event = on_event
        self._log = log
        self._subscribers: list[EventSubscription] = []

    def subscribe(self) -> EventSubscription:
        sub = EventSubscription(self._unsubscribe)
        self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: EventSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

    def emit(self, event: SessionEvent) -> None:
        for sub in self._subscribers:
            sub._put(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a consumer bug must not take the link down
                self._log.exception("event consumer failed on %s", type(event).__name__)

    def close(self) -> None:
        """End every subscription (after the events already queued)."""
        for sub in list(self._subscribers):
            sub.close()
