"""Logs stay while their pod is in the API and go once it is not, never before the pod list
is complete; a deletion removes that pod's directory without listing every other one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.logs import LogConfig, LogStore, Stream
from gateway.logs.janitor import LogJanitor

WAIT = 10.0


async def write_log(store: LogStore, uid: str) -> Path:
    writer = store.open_writer("default", f"pod-{uid}", uid, "app", 0)
    writer.write(Stream.STDOUT, b"hi\n")
    await writer.close()
    return writer.container_dir.parent


async def next_sweep(janitor: LogJanitor) -> None:
    janitor.swept.clear()
    async with asyncio.timeout(WAIT):
        await janitor.swept.wait()


async def delete(janitor: LogJanitor, live: set[str], *uids: str) -> None:
    """Deletions seen in a row through the watch; returns once their batch is done."""
    janitor.removed.clear()
    for uid in uids:
        live.discard(uid)
        janitor.pod_deleted("default", f"pod-{uid}", uid)
    async with asyncio.timeout(WAIT):
        await janitor.removed.wait()


@contextlib.asynccontextmanager
async def running(janitor: LogJanitor, synced: asyncio.Event) -> AsyncIterator[None]:
    runner = asyncio.ensure_future(janitor.run(synced))
    try:
        yield
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_logs_go_once_their_pod_is_gone_from_the_api(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path, fsync=False))
    kept = await write_log(store, "uid-kept")
    deleted_while_down = await write_log(store, "uid-gone")
    deleted_later = await write_log(store, "uid-later")
    store.spool.add("uid-gone", "uid-gone/0/0", "stdout", 0, b"spooled\n")
    await store.spool.flush()
    live = {"uid-kept", "uid-later"}
    synced = asyncio.Event()
    janitor = LogJanitor(store, lambda: live, live.__contains__)
    async with running(janitor, synced):
        for _ in range(20):  # the pod list is not complete yet: nothing may go
            await asyncio.sleep(0)
        assert janitor.sweeps == 0 and deleted_while_down.exists()

        synced.set()  # first full list: pods deleted while the gateway was down go
        await next_sweep(janitor)
        assert not deleted_while_down.exists() and store.spool.uids() == []
        assert kept.exists() and deleted_later.exists()

        await delete(janitor, live, "uid-later")  # a deletion seen through the watch
        assert not deleted_later.exists()
        assert (kept / "app" / "0.log").read_bytes().endswith(b" stdout F hi\n")


async def test_deletions_remove_their_pods_without_a_sweep(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path, fsync=False))
    live = {f"uid-{n}" for n in range(50)} | {"uid-kept"}
    synced = asyncio.Event()
    synced.set()
    janitor = LogJanitor(store, lambda: live, live.__contains__)
    async with running(janitor, synced):
        await next_sweep(janitor)
        deleted = [await write_log(store, f"uid-{n}") for n in range(50)]
        kept = await write_log(store, "uid-kept")
        # Not live and not deleted through the watch: only a full sweep removes it.
        left_for_the_sweep = await write_log(store, "uid-orphan")
        store.spool.add("uid-7", "uid-7/0/0", "stdout", 0, b"spooled\n")
        await store.spool.flush()

        await delete(janitor, live, *(f"uid-{n}" for n in range(50)))
        assert not any(directory.exists() for directory in deleted)
        assert store.spool.uids() == []
        assert kept.exists() and left_for_the_sweep.exists()  # no directory listed
        assert janitor.sweeps == 1 and janitor.removals == 1  # all 50 in one batch
        assert janitor.queued == 0


async def test_a_deleted_pod_still_written_goes_at_the_next_sweep(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path, fsync=False))
    in_api = {"uid-busy"}
    in_use = {"uid-busy"}  # a runtime still writes its output (force-deleted, task printing)

    def live() -> set[str]:
        return in_api | in_use

    synced = asyncio.Event()
    synced.set()
    janitor = LogJanitor(store, live, lambda uid: uid in live(), interval_s=0.05)
    async with running(janitor, synced):
        await next_sweep(janitor)
        busy = await write_log(store, "uid-busy")
        await delete(janitor, in_api, "uid-busy")
        assert busy.exists() and janitor.queued == 0  # left to the periodic sweep

        await next_sweep(janitor)
        assert busy.exists()  # still written
        in_use.discard("uid-busy")
        await next_sweep(janitor)
        assert not busy.exists()
