"""TaskSet: background tasks held until done, failures logged by name, stopped newest first."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.tasks import TaskSet


async def test_a_task_is_held_until_it_ends_and_named_after_its_owner() -> None:
    tasks = TaskSet("dev0")
    release = asyncio.Event()
    task = tasks.spawn(release.wait(), "wait")
    assert task.get_name() == "dev0:wait"
    assert list(tasks) == [task]
    release.set()
    assert await task is True
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert len(tasks) == 0


async def test_a_failure_is_logged_with_the_task_name_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskSet()

    async def broken() -> None:
        raise ValueError("bad frame")

    task = tasks.spawn(broken(), "reader")
    await asyncio.wait([task])
    await asyncio.sleep(0)
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["background task reader failed"]
    assert failures[0].exc_info is not None and isinstance(failures[0].exc_info[1], ValueError)
    assert len(tasks) == 0


async def test_stop_cancels_newest_first_each_finished_before_the_next() -> None:
    tasks = TaskSet()
    order: list[str] = []

    async def hold(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            # The earlier task must still be running when a later one finishes.
            order.append(f"{name} ({len(tasks)} running)")

    for name in ("first", "second", "third"):
        tasks.spawn(hold(name), name)
    await asyncio.sleep(0)
    await tasks.stop()
    assert order == ["third (3 running)", "second (2 running)", "first (1 running)"]
    assert len(tasks) == 0


async def test_stop_also_stops_what_a_stopping_task_spawns() -> None:
    tasks = TaskSet()
    late: list[asyncio.Task[bool]] = []

    async def spawns_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            late.append(tasks.spawn(asyncio.Event().wait(), "late"))

    tasks.spawn(spawns_on_cancel(), "parent")
    await asyncio.sleep(0)
    await tasks.stop()
    assert late and late[0].cancelled()
    assert len(tasks) == 0


async def test_stop_is_not_held_up_by_a_task_that_already_failed() -> None:
    tasks = TaskSet()

    async def broken() -> None:
        raise RuntimeError("gone")

    tasks.spawn(broken(), "broken")
    tasks.spawn(asyncio.Event().wait(), "idle")
    await asyncio.sleep(0)
    await tasks.stop()
    assert len(tasks) == 0
