"""`python -m hil.cluster build|up|down|status`: the local control plane from a shell."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from hil.cluster.build import BuildError, build
from hil.cluster.local import ClusterError, LocalCluster
from hil.cluster.process import pid_alive
from hil.cluster.state import ClusterState, default_run_dir, state_path

log = logging.getLogger(__name__)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _live_state(run_dir: Path) -> ClusterState | None:
    state = ClusterState.read(state_path(run_dir))
    if state is not None and pid_alive(state.supervisor_pid):
        return state
    return None


def cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        binaries = build(force=args.force)
    except BuildError as exc:
        _err(f"build failed: {exc}")
        return 1
    _err(f"binaries in {binaries.bin_dir} ({time.monotonic() - started:.1f}s)")
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run_foreground(run_dir: Path, timeout: float) -> int:
    # `down` sends SIGTERM; a closed terminal sends SIGHUP: both mean a clean stop.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    cluster = LocalCluster(run_dir)
    state_file = state_path(run_dir)
    try:
        cluster.start(timeout=timeout)
        ClusterState(
            supervisor_pid=os.getpid(),
            run_dir=str(run_dir),
            kubeconfig=str(cluster.kubeconfig),
            server=cluster.server,
            ca_cert=str(cluster.ca_cert),
            pids=cluster.pids,
        ).write(state_file)
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        _err(f"control plane {cluster.server} up (logs in {cluster.log_dir}); Ctrl-C to stop")
        while True:
            cluster.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        _err("stopping control plane")
        return 0
    except ClusterError as exc:
        _err(str(exc))
        return 1
    finally:
        state_file.unlink(missing_ok=True)
        cluster.stop()


def _run_detached(run_dir: Path, timeout: float) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path(run_dir).unlink(missing_ok=True)
    supervisor_log = run_dir.parent / f"{run_dir.name}-supervisor.log"
    argv = [
        sys.executable,
        "-m",
        "hil.cluster",
        "up",
        "--run-dir",
        str(run_dir),
        "--timeout",
        str(timeout),
    ]
    with supervisor_log.open("wb") as out:
        # A new session and no death signal: the supervisor outlives this CLI on purpose.
        # Its own children still die with it, so killing it never orphans the components.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + timeout + 15.0
    while time.monotonic() < deadline:
        state = ClusterState.read(state_path(run_dir))
        if state is not None and state.supervisor_pid == proc.pid:
            print(f"export KUBECONFIG={state.kubeconfig}", flush=True)
            _err(
                f"control plane {state.server} up, supervisor pid {proc.pid}; "
                "`python -m hil.cluster down` stops it"
            )
            return 0
        if proc.poll() is not None:
            _err(f"control plane failed to start; see {supervisor_log}")
            _err(supervisor_log.read_text(errors="replace")[-4000:])
            return 1
        time.sleep(0.25)
    proc.terminate()
    _err(f"control plane not up after {timeout:.0f}s; see {supervisor_log}")
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    running = _live_state(run_dir)
    if running is not None:
        _err(f"already running (supervisor pid {running.supervisor_pid})")
        print(f"export KUBECONFIG={running.kubeconfig}")
        return 0
    try:
        build()
    except BuildError as exc:
        _err(f"build failed: {exc}")
        return 1
    if args.detach:
        return _run_detached(run_dir, args.timeout)
    return _run_foreground(run_dir, args.timeout)


def cmd_down(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    state = _live_state(run_dir)
    if state is None:
        _err("not running")
        state_path(run_dir).unlink(missing_ok=True)
        return 0
    os.kill(state.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + 30.0
    while pid_alive(state.supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(state.supervisor_pid):
        # The components carry a death signal tied to the supervisor, so this takes them too.
        _err("supervisor did not stop in 30s; killing it")
        os.kill(state.supervisor_pid, signal.SIGKILL)
    leftover = [name for name, pid in state.pids.items() if pid_alive(pid)]
    if leftover:
        _err(f"still running: {', '.join(leftover)}")
        return 1
    _err("stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    state = _live_state(run_dir)
    if state is None:
        print("not running")
        return 1
    ready = LocalCluster.attach(run_dir, state.server).readyz()
    print(f"server: {state.server}")
    print(f"kubeconfig: {state.kubeconfig}")
    for name, pid in state.pids.items():
        print(f"{name}: pid {pid} {'running' if pid_alive(pid) else 'EXITED'}")
    print(f"readyz: {'ok' if ready else 'NOT READY'}")
    return 0 if ready else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.cluster", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build the pinned binaries into the cache")
    p_build.add_argument("--force", action="store_true", help="rebuild even if cached")
    p_build.set_defaults(func=cmd_build)
    for name, func, text in (
        ("up", cmd_up, "start the control plane (foreground unless --detach)"),
        ("down", cmd_down, "stop a running control plane"),
        ("status", cmd_status, "report whether the control plane is up"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run-dir", default=str(default_run_dir()))
        p.set_defaults(func=func)
        if name == "up":
            p.add_argument("--detach", action="store_true", help="return once ready")
            p.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    code: int = args.func(args)
    return code
