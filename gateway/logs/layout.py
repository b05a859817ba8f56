"""Where log files live, exactly as the kubelet lays them out under /var/log/pods.

    <root>/<namespace>_<pod>_<uid>/<container>/<restart>.log            current file
    <root>/<namespace>_<pod>_<uid>/<container>/<restart>.log.<YYYYMMDD-HHMMSS>[.<n>]   rotated

The optional `.<n>` disambiguates two rotations within the same second (the kubelet rotates
at most every 10 s and never needs it; a size-triggered writer can).

A namespace (63), a pod name (253) and a uid (36) can make `<namespace>_<pod>_<uid>` longer
than the 255 bytes a file name may have (the kubelet fails such pods: kubernetes#80042). Such
a name keeps the namespace and the uid whole and shortens the pod part to a prefix of the name,
`-` and 10 hex digits of the SHA-256 of the full name: still a valid pod name, still
`<ns>_<pod>_<uid>` to a shipper's pattern, mapped back to the real name through the uid (or
checked against a candidate name through the hash). Names that fit are never changed.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_ROTATED = re.compile(r"^(\d+)\.log\.(\d{8}-\d{6})(?:\.(\d+))?$")
_CURRENT = re.compile(r"^(\d+)\.log$")


# The longest file name (one path component) of Linux file systems (ext4, xfs, btrfs, tmpfs).
NAME_MAX = 255
# Hex digits of the SHA-256 of a shortened name: 40 bits, so two long names in one namespace
# that share their prefix differ in their directory name with near certainty (the uid makes
# the name unique anyway; the hash lets a reader tell which name was shortened).
NAME_HASH_HEX = 10


def shortened_name(name: str, budget: int) -> str:
    """`name` if it fits `budget` bytes, else a prefix of it, `-` and its name hash."""
    if len(name.encode()) <= budget:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:NAME_HASH_HEX]
    room = max(budget - NAME_HASH_HEX - 1, 0)
    prefix = name.encode()[:room].decode(errors="ignore").rstrip("-.")
    return f"{prefix}-{digest}" if prefix else digest


def pod_dir_name(namespace: str, pod: str, uid: str) -> str:
    """`<namespace>_<pod>_<uid>`, with the pod part shortened when the whole exceeds NAME_MAX."""
    budget = NAME_MAX - len(namespace.encode()) - len(uid.encode()) - 2
    return f"{namespace}_{shortened_name(pod, budget)}_{uid}"


def pod_log_dir(root: Path, namespace: str, pod: str, uid: str) -> Path:
    return root / pod_dir_name(namespace, pod, uid)


def container_log_dir(root: Path, namespace: str, pod: str, uid: str, container: str) -> Path:
    # Container names are DNS labels (63 bytes); shortened only if something else sent more.
    return pod_log_dir(root, namespace, pod, uid) / shortened_name(container, NAME_MAX)


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


# Beside a container's files, the formatted content of its rotated files (gateway.logs.content):
# a hidden directory, and names without `.log`, so no shipper's pattern takes them for logs.
CONTENT_DIR_NAME = ".content"


def content_file(rotated: Path) -> Path:
    """Where the content of the rotated file `rotated` is kept: `.content/<restart>.<suffix>`."""
    return rotated.parent / CONTENT_DIR_NAME / rotated.name.replace(".log.", ".", 1)


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
