"""Device output is acknowledged only once it is on disk: in its log, or spooled until its pod is
known; a stuck disk holds the acknowledgement, a failed log spools instead of blocking."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.logs import ContainerLogWriter, LogConfig, LogStore, read_logs
from gateway.logs.offsets import load_offsets
from gateway.runtime.output import InstanceLog, OutputSpooler
from gateway.runtime.task_ids import TaskName

UID = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f"
OTHER_UID = "11111111-2222-4333-8444-555555555555"
WAIT = 10.0


class DeviceAcks:
    """The device side of `ack_output`: how far each stream was acknowledged."""

    def __init__(self) -> None:
        self.acked: dict[tuple[str, str], int] = {}
        self._changed = asyncio.Event()

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        key = (task_id, stream)
        self.acked[key] = max(self.acked.get(key, 0), offset)
        self._changed.set()

    async def until(self, task_id: str, stream: str, offset: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.acked.get((task_id, stream), 0) < offset:
                self._changed.clear()
                await self._changed.wait()


class StuckWriter(ContainerLogWriter):
    """A log on a disk that stops answering: its flush waits until the disk is released."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.disk = threading.Event()
        self.entered = asyncio.Event()

    async def flush(self, after_write: Callable[[], None] | None = None) -> None:
        self.entered.set()
        await asyncio.to_thread(self.disk.wait)
        await super().flush(after_write)

    async def publish(self) -> None:
        await asyncio.to_thread(self.disk.wait)
        await super().publish()


def instance_log(
    store: LogStore,
    device: DeviceAcks,
    uid: str = UID,
    *,
    writer: ContainerLogWriter | None = None,
    failures: list[str] | None = None,
) -> InstanceLog:
    name = TaskName(uid, 0, 0)
    writer = writer or store.open_writer("default", f"pod-{uid[:4]}", uid, "app", 0)
    return InstanceLog(
        name,
        writer,
        device,
        OutputSpooler(store.spool, device),
        on_failure=lambda _log, error: (failures if failures is not None else []).append(
            str(error)
        ),
    )


async def log_text(store: LogStore, uid: str) -> bytes:
    async def stopped() -> bool:
        return False

    source = store.source("default", f"pod-{uid[:4]}", uid, "app", restart=0, is_running=stopped)
    return b"".join([chunk async for chunk in read_logs(source)])


async def test_a_stuck_disk_holds_the_acknowledgement_until_the_output_is_on_disk(
    tmp_path: Path,
) -> None:
    store = LogStore(LogConfig(root=tmp_path))
    device = DeviceAcks()
    container_dir = store.container_dir("default", "pod-0f6c", UID, "app")
    writer = StuckWriter(container_dir, 0, store.config)
    output = instance_log(store, device, writer=writer)
    task = str(output.name)

    output.take("stdout", 0, b"one\n")
    await writer.entered.wait()  # the flush is on its way to the disk, which does not answer
    output.take("stdout", 4, b"two\n")
    for _ in range(100):  # however long the loop runs meanwhile, nothing is acknowledged
        await asyncio.sleep(0)
    assert device.acked == {}
    assert load_offsets(container_dir, 0) == {}

    writer.disk.set()
    await device.until(task, "stdout", 8)
    assert await log_text(store, UID) == b"one\ntwo\n"
    assert load_offsets(container_dir, 0)["stdout"] == 8
    await output.finish()


async def test_a_follower_sees_output_arriving_during_a_slow_sync_before_it_is_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush waits for the disk's sync (tens of milliseconds on a busy disk); while someone
    follows the log, what arrives meanwhile is written at once, so `kubectl logs -f` shows it
    without waiting for that sync; it is acknowledged only once a sync covers it."""
    syncing, synced = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        syncing.set()
        synced.wait()
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    store = LogStore(LogConfig(root=tmp_path))
    device = DeviceAcks()
    output = instance_log(store, device)
    task = str(output.name)

    async def running() -> bool:
        return True

    source = store.source("default", "pod-0f6c", UID, "app", restart=0, is_running=running)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def follow() -> None:
        async for chunk in read_logs(source, follow=True):
            if chunk:
                received.put_nowait(chunk)

    follower = asyncio.create_task(follow(), name="follower")
    try:
        output.take("stdout", 0, b"one\n")
        await asyncio.to_thread(syncing.wait, WAIT)  # the first flush waits for its sync
        async with asyncio.timeout(WAIT):
            assert await received.get() == b"one\n"
            while not output.writer.followed:  # noqa: ASYNC110 (the follower settles into its wait)
                await asyncio.sleep(0.001)
            output.take("stdout", 4, b"two\n")
            assert await received.get() == b"two\n"
        assert device.acked == {}  # readable, not yet durable
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        synced.set()
    await device.until(task, "stdout", 8)
    await output.finish()


async def test_a_log_that_cannot_be_written_spools_its_output_and_blocks_nobody(
    tmp_path: Path,
) -> None:
    store = LogStore(LogConfig(root=tmp_path))
    device = DeviceAcks()
    # The pod's log directory cannot be created: a file is in the way (as ENAMETOOLONG or
    # EACCES would stop it).
    blocked_dir = store.container_dir("default", "pod-0f6c", UID, "app").parent
    blocked_dir.write_bytes(b"")
    failures: list[str] = []
    broken = instance_log(store, device, failures=failures)
    healthy = instance_log(store, device, OTHER_UID)

    broken.take("stdout", 0, b"kept\n")
    healthy.take("stdout", 0, b"fine\n")
    await device.until(str(broken.name), "stdout", 5)  # acknowledged: on disk in the spool
    await device.until(str(healthy.name), "stdout", 5)
    assert len(failures) == 1 and "Not a directory" in failures[0]
    broken.take("stdout", 5, b"later\n")  # straight to the spool from now on
    await device.until(str(broken.name), "stdout", 11)

    assert [c.data for c in store.spool.read(UID, str(broken.name))] == [b"kept\n", b"later\n"]
    assert await log_text(store, OTHER_UID) == b"fine\n"
    await broken.finish()
    await healthy.finish()


async def test_output_of_an_unknown_pod_is_spooled_then_moved_into_its_log(
    tmp_path: Path,
) -> None:
    store = LogStore(LogConfig(root=tmp_path))
    device = DeviceAcks()
    spooler = OutputSpooler(store.spool, device)
    task = f"{UID}/0/0"
    assert spooler.take(task, "stdout", 0, b"before the pod\n")
    assert not spooler.take("blink", "stdout", 0, b"not ours\n")  # the caller acknowledges it
    await device.until(task, "stdout", 15)
    assert [c.data for c in store.spool.read(UID, task)] == [b"before the pod\n"]

    # The pod is known now: the log continues from the spool, then the spool entry goes.
    output = instance_log(store, device)
    output.take_spooled(UID, task)
    output.take("stdout", 15, b"after\n")
    await device.until(task, "stdout", 21)
    await output.finish()
    assert await log_text(store, UID) == b"before the pod\nafter\n"
    assert store.spool.task_ids(UID) == []
    assert not (tmp_path / ".spool" / UID).exists()


async def test_a_failing_spool_holds_the_acknowledgement_and_retries(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path))
    device = DeviceAcks()
    spool_dir = store.spool.directory
    spool_dir.write_bytes(b"")  # a full or broken disk: nothing can be created there
    spooler = OutputSpooler(store.spool, device)
    task = f"{UID}/0/0"
    spooler.take(task, "stdout", 0, b"wait for me\n")
    async with asyncio.timeout(WAIT):
        # Failed, waited, failed again: still holding. (A counter: no event to wait on.)
        while spooler.failed_flushes < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert device.acked == {}
    os.unlink(spool_dir)  # the disk is back
    await device.until(task, "stdout", 12)  # the retry wrote it
    assert [c.data for c in store.spool.read(UID, task)] == [b"wait for me\n"]
    await spooler.close()


async def test_a_resumed_log_is_synced_before_repeats_are_acknowledged(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path))
    device = DeviceAcks()
    first = instance_log(store, device)
    first.take("stdout", 0, b"a\nb\n")
    await device.until(str(first.name), "stdout", 4)
    await first.finish()

    restarted = DeviceAcks()  # a new gateway process; the device re-sends what it kept
    again = instance_log(store, restarted)
    again.resume()
    again.take("stdout", 2, b"b\n")
    assert restarted.acked == {}  # not before this writer has synced the file once
    await restarted.until(str(again.name), "stdout", 4)
    again.take("stdout", 4, b"c\n")
    await restarted.until(str(again.name), "stdout", 6)
    await again.finish()
    assert await log_text(store, UID) == b"a\nb\nc\n"
