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


async def test_a_new_instance_keeps_the_previous_ones_log_and_drops_older_ones(
    tmp_path: Path,
) -> None:
    """As the kubelet's container GC (one dead container kept per container): a crash loop
    left two files per restart for as long as its pod existed (thousands a week)."""
    store = LogStore(LogConfig(root=tmp_path, fsync=False, max_bytes=64, max_rotated_files=2))
    directory = store.container_dir("default", "crash", "uid-c", "app")
    for restart in range(6):
        store.mark_instance("default", "crash", "uid-c", "app", restart)
        writer = store.open_writer("default", "crash", "uid-c", "app", restart)
        for line in range(8):  # rotates: rotated files and their content copies too
            writer.write(Stream.STDOUT, f"instance {restart} line {line} {'x' * 20}\n".encode())
            await writer.flush()
        await writer.close()
    left = {p.name.split(".")[0] for p in directory.iterdir() if not p.name.startswith(".")}
    assert left == {"0", "4", "5"}, sorted(p.name for p in directory.iterdir())
    # The first instance's log stays as an empty file: the record that its task id was used.
    assert (directory / "0.log").stat().st_size == 0
    assert store.instance_used("default", "crash", "uid-c", "app", 0)
    content = directory / ".content"
    if content.exists():
        assert {p.name.split(".")[0] for p in content.iterdir()} <= {"4", "5"}
    # Another container of the pod keeps its own instances.
    store.mark_instance("default", "crash", "uid-c", "other", 0)
    assert (directory.parent / "other" / "0.log").exists()
