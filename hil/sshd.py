"""A real OpenSSH server on a loopback port, with everything it needs in one temporary directory
(for the tests and the benchmark of SSH hosts as nodes).

Host keys, the client's key, authorized_keys, sshd_config and a known_hosts file that trusts
this server are made fresh per test; nothing touches the system's sshd or ~/.ssh. sshd runs in
the foreground (-D) as the current user; run as root it also needs /run/sshd (its privilege
separation directory), which is created empty if missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
START_WAIT_S = 10.0


def sshd_missing() -> str:
    """Why no sshd can run here, or "" when one can."""
    if not os.access(SSHD, os.X_OK) or not os.access(SSH_KEYGEN, os.X_OK):
        return f"{SSHD} or ssh-keygen missing: `make system-deps` installs openssh-server"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(root: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[int]] = {}
    for line in listing.splitlines():
        pid, ppid = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def keygen(path: Path) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "wirelet-test", "-f", str(path)],
        check=True,
    )


class Sshd:
    """`start()`/`stop()`/`kill()`; the same port and keys across restarts."""

    def __init__(self, root: Path) -> None:
        missing = sshd_missing()
        if missing:
            raise FileNotFoundError(missing)
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        self.known_hosts = root / "known_hosts"
        self.config = root / "sshd_config"
        self.log = root / "sshd.log"
        self.home_state = root / "state"  # the executor's state dir (absolute, per test)
        self.user = os.environ.get("USER") or __import__("getpass").getuser()
        keygen(self.host_key)
        keygen(self.client_key)
        (root / "authorized_keys").write_text(
            (root / "client_ed25519.pub").read_text(), encoding="utf-8"
        )
        host_pub = (root / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(
            f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n", encoding="utf-8"
        )
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    f"PidFile {root / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",  # the temp dir's modes are the test's business
                    "MaxSessions 20",
                    "MaxStartups 50",
                    "LogLevel ERROR",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s,
            ):
                if s.recv(4).startswith(b"SSH-"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the listener and every connection it serves (each in its own session, so
        found as its descendants), as when the host's sshd dies; commands started in their
        own session by the executor are not descendants and keep running."""
        if self.proc is None:
            return
        self.freeze(False)
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP (or SIGCONT) the listener and its connections: a host that hangs."""
        if self.proc is None:
            return
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        self.kill()

    def host_settings(self, **extra: object) -> dict[str, object]:
        """An `[[ssh.hosts]]` entry for this server."""
        return {
            "address": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "state_dir": str(self.home_state),
            **extra,
        }


@contextlib.contextmanager
def running_sshd(root: Path) -> Iterator[Sshd]:
    server = Sshd(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
