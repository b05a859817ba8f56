from __future__ import annotations

from pathlib import Path

from gateway.logs import LogConfig, LogStore, Stream


async def test_logs_outlive_the_writer_until_cleanup(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path, fsync=False))
    for uid in ("uid-a", "uid-b"):
        writer = store.open_writer("default", f"pod-{uid}", uid, "app", 0)
        writer.write(Stream.STDOUT, b"hi\n")
        await writer.close()
    (tmp_path / "not-a-pod-dir").mkdir()
    assert (tmp_path / "default_pod-uid-a_uid-a" / "app" / "0.log").is_file()

    assert store.remove_pod("default", "pod-uid-a", "uid-a")
    assert not store.remove_pod("default", "pod-uid-a", "uid-a")
    assert not (tmp_path / "default_pod-uid-a_uid-a").exists()

    removed = store.remove_orphans(live_uids={"uid-c"})
    assert removed == [tmp_path / "default_pod-uid-b_uid-b"]
    assert (tmp_path / "not-a-pod-dir").exists()
