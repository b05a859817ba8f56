"""Shared pieces of the benchmarks: statistics, the machine record, result files, processes.

Benchmarks print figures and write `bench/results/<name>.json`; they assert nothing about time.
The gateway and the emulator run as their own processes (`python -m gateway.cli run`,
`python -m hil.emulator`) so the gateway's CPU and memory are its own, as on a real host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from gateway.config import loopback_settings
from gateway.kube.api import KubeApi, KubeApiError, load_configuration
from hil.cluster.build import KUBERNETES_VERSION
from hil.cluster.local import LocalCluster

# WIRELET_BENCH_RESULTS redirects the result files (the CI smoke test writes to a temp dir).
RESULTS_DIR = Path(
    os.environ.get("WIRELET_BENCH_RESULTS") or Path(__file__).resolve().parent / "results"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-interpolated percentile (q in 0..100) of a non-empty list."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median and min..max of repeated runs (n runs)."""
    data = [float(v) for v in values]
    if not data:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of one run's latencies, in milliseconds."""
    if not seconds:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "count": float(len(ms)),
    }


def fmt(s: dict[str, float], unit: str = "", digits: int = 1) -> str:
    """`median (min..max)` of a spread."""
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}..{s['max']:.{digits}f})"


# -- the machine and result files ------------------------------------------------------------


def _memory_bytes() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine(**extra: Any) -> dict[str, Any]:
    """What the figures were measured on."""
    from bench.vk import VK_VERSION

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_memory_bytes() / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kubernetes": KUBERNETES_VERSION,
        "virtual_kubelet": VK_VERSION,
    }
    info.update(extra)
    return info


def write_result(name: str, report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a (log) file; [] when it cannot be read."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(file.tell() - 64 * 1024, 0))
            text = file.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-count:]


def say(message: str) -> None:
    print(message, flush=True)


# -- the control plane -----------------------------------------------------------------------


# The benchmarks' scheduler binds pods this fast at most (its default, 50 QPS with a burst of
# 100, bound a 1000-pod start at ~55 pods/s whatever served the nodes: every node implementation
# measured the scheduler, not itself). The same scheduler for all of them.
SCHEDULER_QPS = 1000.0


def bench_cluster() -> LocalCluster:
    """A control plane for benchmarks: defaults, but a scheduler that is not the bottleneck."""
    return LocalCluster(scheduler_qps=SCHEDULER_QPS)


@contextlib.asynccontextmanager
async def cluster_or(given: LocalCluster | None) -> AsyncIterator[LocalCluster]:
    """The given control plane, or a fresh one for this benchmark alone."""
    if given is not None:
        yield given
        return
    cluster = bench_cluster()
    await asyncio.to_thread(cluster.start)
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


async def admin_api(cluster: LocalCluster) -> KubeApi:
    # The benchmark's own client must never be the bottleneck: practically no rate limit.
    return KubeApi(await load_configuration(str(cluster.kubeconfig)), qps=100000.0, burst=100000)


async def make_namespace(api: KubeApi, name: str) -> None:
    await api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    # Pods need the namespace's default service account, which the controller manager creates;
    # on a busy control plane (deleting the last run's namespace) that took over a minute.
    # Creating it here is what the controller would do; a 409 says it was first.
    with contextlib.suppress(KubeApiError):
        await api.create(
            f"/api/v1/namespaces/{name}/serviceaccounts", {"metadata": {"name": "default"}}
        )
    for _ in range(600):
        try:
            await api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"namespace {name}: no default service account")


async def delete_namespace(api: KubeApi, name: str) -> None:
    with contextlib.suppress(Exception):
        await api.delete(f"/api/v1/namespaces/{name}")


async def delete_nodes(api: KubeApi, names: Iterable[str]) -> None:
    await delete_all(api, (f"/api/v1/nodes/{name}" for name in names))


async def delete_all(api: KubeApi, paths: Iterable[str]) -> None:
    """Best effort, 32 at a time: clean-up after a run never fails the run."""
    sem = asyncio.Semaphore(32)

    async def one(path: str) -> None:
        async with sem:
            with contextlib.suppress(Exception):
                await api.delete(path)

    await asyncio.gather(*(one(path) for path in paths))


def add_run_options(
    parser: argparse.ArgumentParser, *, quick_help: str, repeats: tuple[int, int], what: str
) -> None:
    """--quick and --repeats, as the benchmarks take them; `repeats` is (full, quick)."""
    full, quick = repeats
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--repeats", type=int, default=None, help=f"{what} ({full}; quick {quick})")
    parser.set_defaults(repeats_by_mode=repeats)


def repeats_of(args: argparse.Namespace) -> int:
    full, quick = args.repeats_by_mode
    return int(args.repeats or (quick if args.quick else full))


def node_ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


class Watcher:
    """List then watch a collection, calling `on_event(type, object, wall_time)` for each change.

    Initial items are reported as type "EXISTING". The watch is resumed when the server ends it.
    """

    def __init__(
        self,
        api: KubeApi,
        path: str,
        on_event: Callable[[str, dict[str, Any], float], None],
        **query: Any,
    ) -> None:
        self.api = api
        self.path = path
        self.on_event = on_event
        self.query = query
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.api.get(self.path, **self.query)
        now = time.time()
        for item in listing.get("items") or []:
            self.on_event("EXISTING", item, now)
        rv = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv), name=f"bench-watch {self.path}")

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for event in self.api.watch(self.path, rv, **self.query):
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if event.get("type") == "BOOKMARK":
                        continue
                    self.on_event(str(event.get("type")), obj, time.time())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if getattr(exc, "gone", False):
                    listing = await self.api.get(self.path, **self.query)
                    rv = listing["metadata"]["resourceVersion"]
                else:
                    await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class NodeReadiness:
    """One node's Ready condition as a watch sees it: `ready`, and `since`, the wall time the
    watch saw it change. `async with NodeReadiness(api, node) as readiness:` watches meanwhile."""

    def __init__(self, api: KubeApi, node: str) -> None:
        self.node = node
        self.ready = False
        self.since = 0.0
        self._seen = False
        self._watcher = Watcher(
            api, "/api/v1/nodes", self._on_node, fieldSelector=f"metadata.name={node}"
        )

    def _on_node(self, kind: str, obj: dict[str, Any], now: float) -> None:
        if kind == "DELETED" or obj["metadata"]["name"] != self.node:
            return
        ready = node_ready(obj)
        if not self._seen or ready != self.ready:
            self._seen = True
            self.ready, self.since = ready, now

    async def __aenter__(self) -> NodeReadiness:
        await self._watcher.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._watcher.stop()


async def wait_until(what: str, check: Callable[[], bool], within: float) -> float:
    """Poll a cheap in-memory condition; returns the time waited."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


# -- processes -------------------------------------------------------------------------------


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
            argv = [spy, "record", "-p", str(self.proc.pid), "-d", seconds, "-f", "raw"]
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
