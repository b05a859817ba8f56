"""Shared pieces of the benchmarks: statistics, the machine record, result files, the control
plane (namespaces, clean-up, watches). The gateway and emulator processes: bench.processes.

Benchmarks print figures and write `bench/results/<name>.json`; they assert nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from gateway.kube.api import KubeApi, KubeApiError, load_configuration
from hil.cluster.build import KUBERNETES_VERSION
from hil.cluster.local import LocalCluster

# WIRELET_BENCH_RESULTS redirects the result files (the CI smoke test writes to a temp dir).
RESULTS_DIR = Path(
    os.environ.get("WIRELET_BENCH_RESULTS") or Path(__file__).resolve().parent / "results"
)


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
