"""Fixtures shared by every test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running: leaked tasks hide shutdown bugs."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leftover = [
        t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()
    ]
    for task in leftover:
        task.cancel()
    if leftover:
        names = ", ".join(sorted(t.get_name() for t in leftover))
        pytest.fail(f"test left {len(leftover)} asyncio task(s) running: {names}")
