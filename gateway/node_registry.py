"""The gateway's served devices: one entry per device path, and which path owns each node name.

Two paths can lead to one device (a by-id link and its tty named in the config, two USB
interfaces): the first path whose handshake names the node claims it, and the others are
refused, so one device never has two sessions writing one Node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

N = TypeVar("N")


class NodeRegistry(Mapping[str, N], Generic[N]):
    """Device path -> its served object; node name -> the path that claimed it."""

    def __init__(self) -> None:
        self._by_path: dict[str, N] = {}
        self._owner: dict[str, str] = {}  # node name -> device path

    def add(self, path: str, node: N) -> None:
        self._by_path[path] = node

    def claim(self, name: str, path: str) -> str | None:
        """Claim node `name` for device `path`: None when it is `path`'s (now or already),
        else the path that holds it (the claim is refused)."""
        owner = self._owner.setdefault(name, path)
        return None if owner == path else owner

    def release(self, name: str, path: str) -> None:
        """`path` no longer leads to node `name`'s device (another device answers there)."""
        if self._owner.get(name) == path:
            del self._owner[name]

    def by_name(self, name: str) -> N | None:
        """The object serving node `name`, if any path has claimed it."""
        path = self._owner.get(name)
        return self._by_path.get(path) if path is not None else None

    def __getitem__(self, path: str) -> N:
        return self._by_path[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_path)

    def __len__(self) -> int:
        return len(self._by_path)
