"""Start control-plane children that cannot outlive their parent, and stop them cleanly."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _death_signal_hook(parent_pid: int) -> Callable[[], None]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def hook() -> None:
        # Runs in the child between fork and exec. The kernel sends SIGKILL when the parent
        # *thread* that forked us exits, so spawn from a long-lived thread (the main thread).
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died before prctl took effect; then nobody would ever kill us.
        if os.getppid() != parent_pid:
            os._exit(126)

    return hook


def spawn(
    name: str, argv: list[str], log_path: Path, *, die_with_parent: bool = True
) -> subprocess.Popen[bytes]:
    """Start argv in its own process group with stdout/stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting %s, log %s", name, log_path)
    log.debug("%s argv: %s", name, argv)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C in a terminal reaches only us; we stop them in order.
            start_new_session=True,
            # preexec_fn is the only way to set a death signal; the hook only calls prctl/getppid.
            preexec_fn=_death_signal_hook(os.getpid()) if die_with_parent else None,  # noqa: PLW1509
        )


def stop(name: str, proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited after grace."""
    if proc.poll() is not None:
        log.debug("%s already exited with %s", name, proc.returncode)
        return
    log.info("stopping %s (pid %d)", name, proc.pid)
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("%s ignored SIGTERM for %.0fs, killing it", name, grace)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3 (after the parenthesised command name) is the state; Z means exited, not reaped.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
