"""Remove pod log directories: the kubelet keeps logs after a pod is deleted until its GC runs.

`LogJanitor` (gateway.logs.janitor) decides when: `remove_pod_logs` (through
`LogStore.remove_pod`) for each pod the watch says was deleted, `pod_dirs` and `remove_dirs` for
its full sweeps (start-up and periodic), which catch pods deleted while the gateway was down.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Collection
from pathlib import Path

from gateway.logs import layout

logger = logging.getLogger(__name__)

# A container instance's files: `<restart>.log`, its rotations, `<restart>.offsets` (and its
# temporary), and in `.content/` the content of its rotated files, `<restart>.<suffix>`.
_INSTANCE_FILE = re.compile(r"^(\d+)\.(?:log|offsets|\d{8}-\d{6})(?:\.|$)")


def remove_pod_logs(root: Path, namespace: str, pod: str, uid: str) -> bool:
    """Delete one pod's log directory; True if it existed."""
    directory = layout.pod_log_dir(root, namespace, pod, uid)
    if not directory.is_dir():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    logger.info("removed logs of pod %s/%s (uid %s)", namespace, pod, uid)
    return True


def remove_instances_before(container_dir: Path, restart: int) -> int:
    """Delete the files of a container's instances older than `restart`, as the kubelet's
    container GC removes dead containers (and their logs) beyond the one it keeps per
    container. Returns how many files went."""
    removed = 0
    for directory in (container_dir, container_dir / layout.CONTENT_DIR_NAME):
        try:
            entries = list(directory.iterdir())
        except FileNotFoundError:
            continue
        for entry in entries:
            match = _INSTANCE_FILE.match(entry.name)
            if match and int(match.group(1)) < restart:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed += 1
    return removed


def pod_dirs(root: Path) -> list[tuple[Path, str]]:
    """Every pod log directory under `root`, with its pod's uid."""
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        parsed = layout.parse_pod_dir_name(entry.name)
        if parsed is not None and entry.is_dir():
            found.append((entry, parsed[2]))
    return found


def remove_dirs(directories: Collection[Path]) -> None:
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
        logger.info("removed logs of vanished pod %s", directory.name)


def remove_orphaned_pod_logs(root: Path, live_uids: Collection[str]) -> list[Path]:
    """Delete the log directories of pods whose UID is not in `live_uids`; return them."""
    removed = [path for path, uid in pod_dirs(root) if uid not in live_uids]
    remove_dirs(removed)
    return removed
