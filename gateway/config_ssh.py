"""The `[ssh]` config table: SSH hosts served as nodes beside the devices (docs/ssh.md).

Kept apart from gateway.config so the SSH keys live in one place; gateway.config reads the table
through `parse_ssh` with its own typed reader, so errors name the file and key the same way.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import _Reader

_HOST_ID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9._]*[A-Za-z0-9])?$")
# Remote directory (relative to the login directory unless absolute) for per-task state; one
# per host id, so two nodes on one machine (or one account) never take each other's tasks.
DEFAULT_STATE_ROOT = ".wirelet/tasks"


def default_state_dir(host_id: str) -> str:
    return f"{DEFAULT_STATE_ROOT}/{host_id}"


@dataclass(frozen=True)
class SshHostConfig:
    """One host: where to reach it, as whom, which key proves us and which proves it."""

    address: str
    host_id: str  # the node is named from it as a device's id is: `<prefix><id>`
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key: str | None = None  # private key file; None: asyncssh's defaults (~/.ssh/id_*)
    known_hosts: str = "~/.ssh/known_hosts"  # never disabled: an unknown key is refused
    capacity: Mapping[str, str] = field(default_factory=dict)  # overrides what is probed
    state_dir: str = ""  # "": default_state_dir(host_id)

    def __post_init__(self) -> None:
        if not self.state_dir:
            object.__setattr__(self, "state_dir", default_state_dir(self.host_id))

    @property
    def label(self) -> str:
        return f"ssh://{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class SshConfig:
    hosts: tuple[SshHostConfig, ...] = ()
    # Output and exit status are collected by one command per host this often (log latency).
    poll_interval_s: float = 0.2
    # asyncssh keepalives: a host that misses `keepalive_count` in a row is unreachable.
    keepalive_interval_s: float = 5.0
    keepalive_count: int = 3
    connect_timeout_s: float = 15.0
    command_timeout_s: float = 15.0  # a command (start, stop, poll) that takes longer: host slow
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 60.0
    # Output read ahead of what the log has acknowledged, per stream: a slow disk slows reading.
    read_window_bytes: int = 1 << 20


def parse_host_flag(text: str, where: str = "--ssh") -> SshHostConfig:
    """`[USER@]HOST[:PORT]` from the command line."""
    user, _, rest = text.rpartition("@")
    host, port = rest, 22
    if rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"{where}: expected [USER@]HOST[:PORT], bad port in {text!r}")
        port = int(port_text)
    if not host:
        raise ConfigError(f"{where}: expected [USER@]HOST[:PORT], got {text!r}")
    return SshHostConfig(
        address=host,
        host_id=_host_id(host, where),
        port=port,
        **({"user": user} if user else {}),  # type: ignore[arg-type]
    )


def _host_id(text: str, where: str) -> str:
    if not _HOST_ID.match(text):
        raise ConfigError(
            f"{where}: id {text!r} cannot name a node: use letters, digits, '-', '.', '_'"
        )
    return text


def parse_ssh(table: _Reader) -> SshConfig:
    """The `[ssh]` table and its `[[ssh.hosts]]` entries."""
    raw_hosts = table.get("hosts")
    if raw_hosts is None:
        raw_hosts = []
    if not isinstance(raw_hosts, list) or not all(isinstance(h, dict) for h in raw_hosts):
        raise table._fail("hosts", "an array of tables ([[ssh.hosts]])", raw_hosts)
    hosts = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_hosts):
        entry = type(table)(table.source, raw, f"{table.path}.hosts[{index}]")
        address = entry.string("address", None)
        if address is None:
            raise entry._fail("address", "the host name or IP address to reach", None)
        host_id = _host_id(entry.string("id", address) or address, f"{entry.source}: {entry.path}")
        if host_id in seen:
            raise ConfigError(f"{entry.source}: {entry.path}.id: {host_id!r} is used twice")
        seen.add(host_id)
        key = entry.string("key", None)
        known_hosts = entry.string("known_hosts", SshHostConfig.known_hosts)
        hosts.append(
            SshHostConfig(
                address=address,
                host_id=host_id,
                port=entry.integer("port", 22, minimum=1, maximum=65535),
                user=entry.string("user", None) or getpass.getuser(),
                key=str(Path(key).expanduser()) if key else None,
                known_hosts=str(Path(known_hosts or "").expanduser()),
                capacity=entry.capacity("capacity"),
                state_dir=entry.string("state_dir", "") or "",
            )
        )
        entry.reject_unknown()
    defaults = SshConfig()
    config = SshConfig(
        hosts=tuple(hosts),
        poll_interval_s=table.number("poll_interval_s", defaults.poll_interval_s, minimum=0.01),
        keepalive_interval_s=table.number(
            "keepalive_interval_s", defaults.keepalive_interval_s, minimum=0.1
        ),
        keepalive_count=table.integer(
            "keepalive_count", defaults.keepalive_count, minimum=1, maximum=100
        ),
        connect_timeout_s=table.number(
            "connect_timeout_s", defaults.connect_timeout_s, minimum=0.1
        ),
        command_timeout_s=table.number(
            "command_timeout_s", defaults.command_timeout_s, minimum=0.1
        ),
        reconnect_initial_s=table.number(
            "reconnect_initial_s", defaults.reconnect_initial_s, minimum=0.01
        ),
        reconnect_max_s=table.number("reconnect_max_s", defaults.reconnect_max_s, minimum=0.01),
        read_window_bytes=table.integer(
            "read_window_bytes", defaults.read_window_bytes, minimum=4096, maximum=1 << 30
        ),
    )
    table.reject_unknown()
    return config
