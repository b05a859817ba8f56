"""The keyed coalescing queue behind status writes: one hand-out per burst of adds, never two at
once for a key, a longer first window cut short by the next add, retries after a back-off."""

from __future__ import annotations

import asyncio

from gateway.kube.coalescing_queue import CoalescingQueue

HOUR = 3600.0


async def _next(queue: CoalescingQueue[str]) -> str:
    return await asyncio.wait_for(queue.get(), 10.0)


async def test_many_adds_of_one_key_come_out_once() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    for _ in range(5):
        queue.add("a")
    assert len(queue) == 1
    assert await _next(queue) == "a"
    assert len(queue) == 0 and "a" not in queue


async def test_keys_come_out_oldest_first() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    for key in ("b", "a", "c", "a"):
        queue.add(key)
    assert [await _next(queue) for _ in range(3)] == ["b", "a", "c"]


async def test_a_key_being_processed_is_handed_out_again_only_after_done() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    queue.add("a")
    assert await _next(queue) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.processing("a") and "a" not in queue  # not twice at once
    queue.done("a")
    assert "a" in queue  # the changes meanwhile: once more
    assert await _next(queue) == "a"
    queue.done("a")
    assert len(queue) == 0 and not queue.processing("a")


async def test_a_first_add_waits_its_longer_window_unless_another_add_follows() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    queue.add("new", first=True)
    queue.add("known")
    assert await _next(queue) == "known"  # "new" still waits its hour
    queue.add("new")  # the change that follows the first
    assert await _next(queue) == "new"


async def test_the_change_after_a_first_add_is_due_at_once_ahead_of_windows() -> None:
    # Both windows an hour: only a key due at once can come out.
    queue: CoalescingQueue[str] = CoalescingQueue(HOUR, HOUR)
    queue.add("waiting")  # in its (hour-long) window
    queue.add("new", first=True)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.add("new")  # the device confirmed the start: write both now
    assert await asyncio.wait_for(getter, 10.0) == "new"
    assert "waiting" in queue and "new" not in queue and queue.processing("new")
    queue.add("new")  # a change while its write is in flight: remembered, as for any key
    queue.done("new")
    assert "new" in queue


async def test_forget_drops_a_key_that_was_due_at_once() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(HOUR, HOUR)
    queue.add("new", first=True)
    queue.add("new")
    queue.forget("new")
    assert "new" not in queue and len(queue) == 0


async def test_a_waiting_get_wakes_up_for_a_new_key() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.add("a")
    assert await asyncio.wait_for(getter, 10.0) == "a"


async def test_a_retry_hands_the_key_out_again_and_folds_in_changes_meanwhile() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    queue.add("a")
    assert await _next(queue) == "a"
    queue.retry_after("a", 0.0)
    queue.add("a")  # while waiting for the retry: covered by it
    assert await _next(queue) == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_forget_drops_pending_adds_and_a_pending_retry() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue(0.0, HOUR)
    queue.add("a", first=True)
    queue.add("b")
    queue.forget("a")
    queue.forget("b")
    assert len(queue) == 0
    queue.add("c")
    assert await _next(queue) == "c"
    queue.retry_after("c", 0.0)
    queue.forget("c")
    assert not queue.processing("c")
    await asyncio.sleep(0.01)
    assert len(queue) == 0  # the retry was cancelled
    queue.close()
