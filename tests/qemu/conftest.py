"""The reference firmware on emulated boards (QEMU), served by a real gateway process against the
real control plane. Booting boards costs seconds, so each module boots one board per target and
one gateway once; every test gets its own namespace. Skipped, with the reason, where QEMU or a
toolchain is missing (`make system-deps` installs them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.processes import write_toml
from gateway.kube.api import KubeApi, load_configuration
from hil.cluster.local import LocalCluster
from hil.qemu.firmware import missing_tools
from hil.qemu.targets import TARGETS
from tests.e2e.conftest import Wirelet, _wait_default_sa, gateway_settings

# Link timers for emulated boards: the e2e suite's 1 s link-lost bound is for in-process devices;
# QEMU's AVR board spins a host core (its model cannot sleep), and on a loaded CI machine it can
# be descheduled for longer than that. Still shorter than the defaults (5 s / 15 s).
QEMU_LINK = {"heartbeat_interval": 0.5, "link_lost_timeout": 5.0, "handshake_timeout": 10.0}


@dataclass
class Boards:
    """A `python -m hil.qemu` process running a board per target, linked into one directory."""

    directory: Path
    ids: dict[str, str]  # target -> device id
    processes: list[subprocess.Popen[str]]

    def ctl(self, target: str, op: str) -> None:
        argv = [sys.executable, "-m", "hil.qemu", "ctl", str(self.directory), self.ids[target], op]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{' '.join(argv[1:])}: {done.stdout}{done.stderr}"


class GatewayProcess:
    """`wirelet run` as its own process, so a test can SIGKILL it."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)],
                stdout=out,
                stderr=out,
            )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _available_targets() -> tuple[list[str], str]:
    targets, reasons = [], []
    for name, target in TARGETS.items():
        missing = missing_tools(target)
        if missing:
            reasons.append(f"{name}: {', '.join(missing)} missing (run `make system-deps`)")
        else:
            targets.append(name)
    return targets, "; ".join(reasons)


def _start_boards(directory: Path, targets: list[str]) -> Boards:
    """One `python -m hil.qemu` process with a board of each target (one control socket)."""
    prefix = f"qemu-{uuid.uuid4().hex[:6]}-"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hil.qemu", "--boards", "1", "--dir", str(directory)),
            *("--prefix", prefix, *(f"--target={target}" for target in targets)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    boards = Boards(directory, {t: f"{prefix}{t}-0" for t in targets}, [proc])
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:  # bounded by the test timeout
        output.append(line)
        if line.strip() == "ready":
            return boards
    _stop_boards(boards)
    raise AssertionError(f"python -m hil.qemu failed:\n{''.join(output)}")


def _stop_boards(boards: Boards) -> None:
    for proc in boards.processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in boards.processes:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class QemuSetup:
    boards: Boards
    gateway: GatewayProcess
    cluster: LocalCluster
    device_dir: Path


@pytest.fixture(scope="module")
def qemu_setup(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QemuSetup]:
    targets, reason = _available_targets()
    if not targets:
        pytest.skip(f"no emulated boards: {reason}")
    workdir = tmp_path_factory.mktemp("qemu")
    device_dir = workdir / "devices"
    device_dir.mkdir()
    boards = _start_boards(device_dir, targets)
    config = workdir / "wirelet.toml"
    write_toml(config, gateway_settings(cluster, device_dir, workdir, link=QEMU_LINK))
    gateway = GatewayProcess(config, workdir / "gateway.log")
    try:
        gateway.start()
        yield QemuSetup(boards, gateway, cluster, device_dir)
    finally:
        gateway.stop()
        _stop_boards(boards)
        # a stale node (NotReady, but there) must not attract the next module's pods; found by
        # the device-id label, whatever the node naming
        ids = ",".join(boards.ids.values())
        deleted = subprocess.run(
            [
                *("kubectl", f"--kubeconfig={cluster.kubeconfig}", "delete", "node"),
                *("-l", f"wirelet.io/device-id in ({ids})"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert deleted.stdout.count("deleted") == len(boards.ids), deleted.stdout


# Lines of the gateway's log a failed test prints (it runs as its own process, so pytest does not
# capture it): what the gateway saw of the boards is most of what a CI failure has to go on.
GATEWAY_LOG_TAIL = 80


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        setup = item.funcargs.get("qemu_setup") if hasattr(item, "funcargs") else None
        if isinstance(setup, QemuSetup) and setup.gateway.log.is_file():
            lines = setup.gateway.log.read_text(errors="replace").splitlines()
            report.sections.append(
                (
                    f"gateway log, last {GATEWAY_LOG_TAIL} lines",
                    "\n".join(lines[-GATEWAY_LOG_TAIL:]),
                )
            )
    return report


@pytest.fixture
async def wirelet(qemu_setup: QemuSetup) -> AsyncIterator[Wirelet]:
    """A fresh namespace on the module's boards and gateway."""
    cluster = qemu_setup.cluster
    namespace = f"qemu-{uuid.uuid4().hex[:6]}"
    async with KubeApi(await load_configuration(str(cluster.kubeconfig))) as api:
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        await _wait_default_sa(api, namespace)
        env = Wirelet(cluster, None, None, api, namespace, qemu_setup.device_dir, None)  # type: ignore[arg-type]
        try:
            yield env
        finally:
            await api.delete(f"/api/v1/namespaces/{namespace}")
