"""Where log files live, exactly as the kubelet lays them out under /var/log/pods.

    <root>/<namespace>_<pod>_<uid>/<container>/<restart>.log            current file
    <root>/<namespace>_<pod>_<uid>/<container>/<restart>.log.<YYYYMMDD-HHMMSS>[.<n>]   rotated

The optional `.<n>` disambiguates two rotations within the same second (the kubelet rotates
at most every 10 s and never needs it; a size-triggered writer can).
"""

from __future__ import annotations

import re
from pathlib import Path

_ROTATED = re.compile(r"^(\d+)\.log\.(\d{8}-\d{6})(?:\.(\d+))?$")
_CURRENT = re.compile(r"^(\d+)\.log$")


def pod_log_dir(root: Path, namespace: str, pod: str, uid: str) -> Path:
    return root / f"{namespace}_{pod}_{uid}"


def container_log_dir(root: Path, namespace: str, pod: str, uid: str, container: str) -> Path:
    return pod_log_dir(root, namespace, pod, uid) / container


def current_log_file(container_dir: Path, restart: int) -> Path:
    return container_dir / f"{restart}.log"


def rotated_log_files(container_dir: Path, restart: int) -> list[Path]:
    """Rotated files of one container instance, oldest first."""
    found: list[tuple[str, int, Path]] = []
    try:
        entries = list(container_dir.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        match = _ROTATED.match(entry.name)
        if match and int(match.group(1)) == restart:
            found.append((match.group(2), int(match.group(3) or 0), entry))
    found.sort(key=lambda item: (item[0], item[1]))
    return [path for _, _, path in found]


def instance_log_files(container_dir: Path, restart: int) -> list[Path]:
    """All files of one container instance in write order: rotated ones, then the current."""
    files = rotated_log_files(container_dir, restart)
    current = current_log_file(container_dir, restart)
    if current.exists():
        files.append(current)
    return files


def rotated_name(container_dir: Path, restart: int, suffix: str) -> Path:
    """A free name for rotating `<restart>.log` away at the time given by `suffix`."""
    candidate = container_dir / f"{restart}.log.{suffix}"
    counter = 0
    while candidate.exists():
        counter += 1
        candidate = container_dir / f"{restart}.log.{suffix}.{counter}"
    return candidate


def restart_counts(container_dir: Path) -> list[int]:
    """Restart counts that have any file in this container's directory, ascending."""
    counts: set[int] = set()
    try:
        entries = list(container_dir.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        match = _CURRENT.match(entry.name) or _ROTATED.match(entry.name)
        if match:
            counts.add(int(match.group(1)))
    return sorted(counts)


def parse_pod_dir_name(name: str) -> tuple[str, str, str] | None:
    """(namespace, pod, uid) of a pod directory name; names and namespaces contain no '_'."""
    parts = name.split("_")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]
