"""Wakeup: one armed call at the earliest deadline, moved earlier, never later, fired once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_protocol.wakeup import Wakeup


@dataclass
class _Call:
    when: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Clock:
    """A loop whose time moves only when told: `run_until` fires what is due, in order."""

    calls: list[_Call] = field(default_factory=list)

    def call_at(self, when: float, callback: Callable[[], object], /) -> _Call:
        self.calls.append(_Call(when, callback))
        return self.calls[-1]

    def armed(self) -> list[float]:
        return [c.when for c in self.calls if not c.cancelled]

    def run_until(self, now: float) -> None:
        for call in sorted(self.calls, key=lambda c: c.when):
            if not call.cancelled and call.when <= now:
                call.cancelled = True  # done
                call.callback()


def test_an_earlier_deadline_moves_the_wakeup_a_later_one_keeps_it() -> None:
    clock, fired = _Clock(), []
    wakeup = Wakeup(clock, lambda: fired.append(1))
    wakeup.arm(5.0)
    wakeup.arm(9.0)  # later: the armed one recomputes when it fires
    assert clock.armed() == [5.0] and wakeup.at == 5.0
    wakeup.arm(2.0)
    assert clock.armed() == [2.0]
    clock.run_until(10.0)
    assert fired == [1] and wakeup.at is None


def test_none_and_cancel_disarm() -> None:
    clock, fired = _Clock(), []
    wakeup = Wakeup(clock, lambda: fired.append(1))
    wakeup.arm(1.0)
    wakeup.arm(None)
    assert clock.armed() == [] and wakeup.at is None
    wakeup.arm(1.0)
    wakeup.cancel()
    clock.run_until(2.0)
    assert fired == []


def test_the_wake_callback_may_arm_the_next_one() -> None:
    clock = _Clock()
    deadlines = iter([2.0, 3.0, None])
    seen: list[float | None] = []

    def step() -> None:
        nxt = next(deadlines)
        seen.append(nxt)
        wakeup.arm(nxt)

    wakeup = Wakeup(clock, step)
    wakeup.arm(1.0)
    for now in (1.0, 2.0, 3.0):
        clock.run_until(now)
    assert seen == [2.0, 3.0, None] and wakeup.at is None


async def test_it_runs_on_an_asyncio_loop() -> None:
    loop = asyncio.get_running_loop()
    woke = asyncio.Event()
    wakeup = Wakeup(loop, woke.set)
    wakeup.arm(loop.time())
    await asyncio.wait_for(woke.wait(), 5)
    assert wakeup.at is None
