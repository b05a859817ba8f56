"""One wake-up at the earliest deadline: how an event loop drives a sans-I/O core's clock.

The link state machine (and anything shaped like it) says when it next needs the clock through
`next_deadline()`; its driver arms a `Wakeup` after every step. An earlier wake-up already armed
is kept (it recomputes when it fires), a later one is moved earlier, and `None` disarms it.
The loop is anything with `call_at` (asyncio's, uvloop's), so this module stays I/O-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class _Handle(Protocol):
    def cancel(self) -> None: ...


class _Loop(Protocol):
    def call_at(self, when: float, callback: Callable[[], object], /) -> _Handle: ...


class Wakeup:
    """Calls `on_wake` once at the earliest deadline armed since it last fired."""

    def __init__(self, loop: _Loop, on_wake: Callable[[], object]) -> None:
        self._loop = loop
        self._on_wake = on_wake
        self._handle: _Handle | None = None
        self.at: float | None = None  # when the armed wake-up fires; None: not armed

    def arm(self, deadline: float | None) -> None:
        if deadline is None:
            self.cancel()
            return
        if self.at is not None and self.at <= deadline:
            return  # an earlier (or equal) wake-up is armed; it recomputes when it fires
        self.cancel()
        self.at = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.at = None

    def _fire(self) -> None:
        self._handle = None
        self.at = None
        self._on_wake()
