"""The output spool keeps output durably until the pod's log takes it, across restarts."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.logs import LogConfig, LogStore
from gateway.logs.spool import OutputSpool, SpooledOutput

UID = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f"
TASK = f"{UID}/0/0"


async def test_spooled_output_survives_a_new_process_in_order(tmp_path: Path) -> None:
    spool = OutputSpool(tmp_path / "spool")
    spool.add(UID, TASK, "stdout", 0, b"one\n")
    spool.add(UID, TASK, "stderr", 0, b"oops")
    # Pending output is readable before it is flushed (a pod can appear meanwhile).
    assert spool.read(UID, TASK) == [
        SpooledOutput("stdout", 0, b"one\n"),
        SpooledOutput("stderr", 0, b"oops"),
    ]
    await spool.flush()
    spool.add(UID, TASK, "stdout", 4, b"two\n")
    await spool.flush()

    again = OutputSpool(tmp_path / "spool")  # a restarted gateway
    assert again.uids() == [UID] and again.task_ids(UID) == [TASK]
    assert [(c.stream, c.offset, c.data) for c in again.read(UID, TASK)] == [
        ("stdout", 0, b"one\n"),
        ("stderr", 0, b"oops"),
        ("stdout", 4, b"two\n"),
    ]
    again.discard(UID, TASK)
    assert again.task_ids(UID) == [] and again.read(UID, TASK) == []
    assert os.listdir(tmp_path / "spool") == []


async def test_a_record_torn_by_a_crash_is_cut_before_appending(tmp_path: Path) -> None:
    spool = OutputSpool(tmp_path / "spool")
    spool.add(UID, TASK, "stdout", 0, b"whole\n")
    await spool.flush()
    (file,) = (tmp_path / "spool" / UID).iterdir()
    with file.open("ab") as torn:
        torn.write(b"\x01\x00\x00")  # a crash in the middle of the next record's header
    restarted = OutputSpool(tmp_path / "spool")
    assert [c.data for c in restarted.read(UID, TASK)] == [b"whole\n"]
    restarted.add(UID, TASK, "stdout", 6, b"after\n")
    await restarted.flush()
    assert [c.data for c in OutputSpool(tmp_path / "spool").read(UID, TASK)] == [
        b"whole\n",
        b"after\n",
    ]


async def test_cleanup_discards_the_spool_of_pods_that_are_gone(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path, fsync=False))
    store.spool.add("uid-a", "uid-a/0/0", "stdout", 0, b"a\n")
    store.spool.add("uid-b", "uid-b/0/0", "stdout", 0, b"b\n")
    await store.spool.flush()
    store.remove_orphans(live_uids={"uid-a"})
    assert store.spool.uids() == ["uid-a"]
    assert store.remove_pod("default", "pod-a", "uid-a")  # only spooled output: still removed
    assert store.spool.uids() == []
    assert not (tmp_path / ".spool" / "uid-a").exists()
