"""The gateway and the emulator as child processes of a benchmark, and a /proc sampler of a
process's CPU and memory.

They run as their own processes (`python -m gateway.cli run`, `python -m hil.emulator`) so the
gateway's CPU and memory are its own, as on a real host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gateway.config import loopback_settings
from hil.cluster.local import LocalCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, data: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_config(
    cluster: LocalCluster,
    workdir: Path,
    device_dir: Path,
    prefix: str,
    *,
    nodes: dict[str, Any] | None = None,
    kube: dict[str, Any] | None = None,
    link: dict[str, Any] | None = None,
) -> Path:
    """A gateway config for the local control plane; defaults everywhere else (as shipped)."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = loopback_settings(
        **cluster.gateway_credentials(["127.0.0.1", "localhost"], workdir),
        device_dir=str(device_dir),
        log_dir=str(workdir / "pods"),
    )
    data["kube"].update(kube or {})
    data["nodes"] = {"name_prefix": prefix, **(nodes or {})}
    if link:
        data["link"] = link
    return write_toml(workdir / "wirelet.toml", data)


class Child:
    """A child process whose output lines go, timestamped, to a log file.

    Only lines containing one of `keep` are kept in memory (a broken gateway can log millions).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None,
        keep: tuple[str, ...] = (),
    ):
        self.name = name
        self.keep = keep
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[tuple[float, str]] = []
        self._readers: list[asyncio.Task[None]] = []
        self._watchers: list[tuple[str, asyncio.Event]] = []
        self._spy: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        profile = os.environ.get("WIRELET_BENCH_PYSPY")  # a path: profile the gateway
        if profile and self.name == "gateway":
            spy = str(Path(sys.executable).parent / "py-spy")
            seconds = os.environ.get("WIRELET_BENCH_PYSPY_SECONDS", "60")
            argv = [spy, "record", "--nonblocking", "-p", str(self.proc.pid), "-d", seconds]
            argv += ["-f", "raw"]  # --nonblocking: see bench.scale's _profile
            self._spy = await asyncio.create_subprocess_exec(
                *argv, "-o", profile, stdout=asyncio.subprocess.DEVNULL
            )
        log_file = self.log_path.open("a")
        for stream in (self.proc.stdout, self.proc.stderr):
            self._readers.append(
                asyncio.create_task(self._read(stream, log_file), name=f"bench-read {self.name}")
            )

    async def _read(self, stream: asyncio.StreamReader, log_file: Any) -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            now = time.time()
            if any(needle in line for needle in self.keep):
                self.lines.append((now, line))
            log_file.write(f"{now:.3f} {line}\n")
            for needle, event in self._watchers:
                if needle in line:
                    event.set()

    async def wait_line(self, needle: str, within: float) -> None:
        """Wait for a line containing `needle` (which must be one of `keep`)."""
        if any(needle in line for _, line in self.lines):
            return
        event = asyncio.Event()
        self._watchers.append((needle, event))
        await asyncio.wait_for(event.wait(), within)

    def count(self, needle: str, since: float = 0.0) -> list[float]:
        return [t for t, line in self.lines if t >= since and needle in line]

    async def stop(self, sig: int = signal.SIGTERM, within: float = 20.0) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2)
        self._readers.clear()


def gateway_child(config: Path, log_path: Path, *, source: Path | None = None) -> Child:
    """The gateway as a child process; `source`: run the gateway package of that source tree
    (another checkout: a baseline measured in the same run) instead of this one."""
    if source is None:
        argv = [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)]
        return Child("gateway", argv, log_path, None, keep=("adopted running task",))
    # -P: the working directory (this checkout) must not come before the other tree.
    argv = [sys.executable, "-P", "-m", "gateway.cli", "run", "-c", str(config)]
    env = {"PYTHONPATH": str(source)}
    return Child("gateway", argv, log_path, env, keep=("adopted running task",))


def _write_profile(directory: Path, profile: dict[str, Any]) -> Path | None:
    directory.mkdir(parents=True, exist_ok=True)
    if not profile:
        return None
    path = directory.parent / f"{directory.name}-profile.toml"
    lines = [f"{key} = {toml_value(value)}" for key, value in profile.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


async def start_emulator(directory: Path, devices: int, log_path: Path, **profile: Any) -> Child:
    """`python -m hil.emulator` serving `devices` devices emu-0000.. in `directory`."""
    argv = [sys.executable, "-m", "hil.emulator", "--devices", str(devices)]
    argv += ["--dir", str(directory)]
    profile_path = _write_profile(directory, profile)
    if profile_path is not None:
        argv += ["--profile", str(profile_path)]
    child = Child("emulator", argv, log_path, None, keep=("ready",))
    await child.start()
    await child.wait_line("ready", 60 + devices / 10)
    return child


class ProcSampler:
    """CPU (% of one core) and RSS of one process, from /proc, sampled every `period` seconds."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, cpu seconds, rss bytes)
        self._task: asyncio.Task[None] | None = None

    def read(self) -> tuple[float, float, int]:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
        rss = int(fields[21]) * PAGE
        return time.monotonic(), cpu, rss

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.samples.append(self.read())
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self.samples.clear()
        self._task = asyncio.create_task(self._run(), name="bench-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.samples.append(self.read())

    def cpu_percent_slices(self, slice_s: float) -> list[float]:
        """CPU % of one core over consecutive slices of about `slice_s` seconds."""
        out: list[float] = []
        if len(self.samples) < 2:
            return out
        start = self.samples[0]
        for sample in self.samples[1:]:
            if sample[0] - start[0] >= slice_s - 1e-3:
                out.append(100.0 * (sample[1] - start[1]) / (sample[0] - start[0]))
                start = sample
        return out

    def cpu_percent_total(self) -> float:
        first, last = self.samples[0], self.samples[-1]
        return 100.0 * (last[1] - first[1]) / max(last[0] - first[0], 1e-9)

    def rss_mb(self) -> list[float]:
        return [s[2] / 1e6 for s in self.samples]
