"""Wake `kubectl logs -f` readers when a log file changes, instead of having them poll.

A `LogChanges` hands out one `ChangeSignal` per container directory, shared by the writers of
that container's instances and the readers following them. A writer calls `notify()` (from its
I/O thread, right after bytes reach the file and before they are fdatasync'd: a follower may
read what is written, acknowledgement to the device still waits for the sync) and when it
rotates or closes the file. A follower remembers `generation` before it reads, and after
reading everything waits for the generation to move on, so a write that lands between its
read and its wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from pathlib import Path


class ChangeSignal:
    """A counter of changes to one container's log files, with waiters woken on each change."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def followed(self) -> bool:
        """Whether a follower is waiting for the next change (it has read everything)."""
        return bool(self._waiters)

    def notify(self) -> None:
        """Something changed; callable from any thread."""
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        for waiter in waiters:
            # RuntimeError: that reader's event loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    async def wait_past(self, seen: int, recheck_after: float | None = None) -> bool:
        """Wait until `generation` differs from `seen`; False if `recheck_after` seconds
        passed first (the caller looks at what no writer announces, then waits again)."""
        waiter = asyncio.get_running_loop().create_future()
        with self._lock:
            if self.generation != seen:
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, recheck_after)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LogChanges:
    """One `ChangeSignal` per container directory, kept while a writer or reader holds it."""

    def __init__(self) -> None:
        self._signals: weakref.WeakValueDictionary[Path, ChangeSignal] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()

    def signal(self, container_dir: Path) -> ChangeSignal:
        with self._lock:
            signal = self._signals.get(container_dir)
            if signal is None:
                signal = ChangeSignal()
                self._signals[container_dir] = signal
            return signal
