"""Fixtures shared by every test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from hil.cluster.local import LocalCluster
from hil.cluster.pytest_plugin import session_cluster


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


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A real local control plane (etcd + apiserver + controller-manager + scheduler)."""
    yield from session_cluster()
