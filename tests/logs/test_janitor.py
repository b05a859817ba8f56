"""Logs stay while their pod is in the API and go once it is not, never before the pod list
is complete."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_logs_go_once_their_pod_is_gone_from_the_api(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path, fsync=False))
    kept = await write_log(store, "uid-kept")
    deleted_while_down = await write_log(store, "uid-gone")
    deleted_later = await write_log(store, "uid-later")
    store.spool.add("uid-gone", "uid-gone/0/0", "stdout", 0, b"spooled\n")
    await store.spool.flush()
    live = {"uid-kept", "uid-later"}
    synced = asyncio.Event()
    janitor = LogJanitor(store, lambda: live)
    runner = asyncio.ensure_future(janitor.run(synced))
    try:
        for _ in range(20):  # the pod list is not complete yet: nothing may go
            await asyncio.sleep(0)
        assert janitor.sweeps == 0 and deleted_while_down.exists()

        synced.set()  # first full list: pods deleted while the gateway was down go
        await next_sweep(janitor)
        assert not deleted_while_down.exists() and store.spool.uids() == []
        assert kept.exists() and deleted_later.exists()

        live.discard("uid-later")  # a deletion seen through the watch: swept at once
        janitor.pod_deleted()
        await next_sweep(janitor)
        assert not deleted_later.exists()
        assert (kept / "app" / "0.log").read_bytes().endswith(b" stdout F hi\n")
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
