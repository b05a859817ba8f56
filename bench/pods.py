"""Pod lifecycle on the local control plane: wirelet against virtual-kubelet's mock provider.

    python -m bench.pods [--quick] [--repeats N] [--no-vk] [--sizes 100x10 ...] [--baseline TREE]

N pods (100 and 1000) spread by the scheduler over M nodes. For wirelet the nodes are M emulated
devices (one `python -m hil.emulator` process) served by one gateway (`python -m gateway.cli run`,
default config); for the baseline they are M virtual-kubelet mock nodes, one process each, as
virtual-kubelet runs. They take turns on the same control plane, in rounds (each round runs each
implementation once, on fresh nodes, in the opposite order to the round before: the shared host's
load drifts, and that drift must not fall between them), with the same pods: app `forever` (so
they stay Running), the provider toleration, and a node affinity that picks the implementation
under test. Nothing else differs. The control plane is the benchmarks' (bench.common.bench_cluster):
its scheduler's API budget is raised so that it is not what sets the pace.

Per run: create→Running latency (from just before the create request to the watch event showing
phase Running; the pod's creationTimestamp has one-second resolution, too coarse for this),
pods/s (N over first create to last Running), and delete→gone latency (delete request to the
watch's DELETED event). Median and min..max over the repeats. Beside them, to see where time
goes: create→bound (the scheduler), bound→first status (the node's first status write) and
bound→Running, and the API server's count of writes per pod (status writes, events).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common, processes
from bench.common import Watcher, say
from bench.pods_report import TARGETS, print_entry, print_run
from bench.pods_rounds import Measure, Size, in_rounds, summarize
from bench.run_costs import (
    CpuReader,
    Snapshot,
    control_plane_cpu,
    cpu_seconds,
    events_settled,
    snapshot,
    write_latency_ms,
    writes_per_pod,
)
from bench.stuck import StuckRun, describe_stuck, process_state, wait_nodes_ready
from bench.vk import VkBuildError, VkFleet, build
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster

CREATE_CONCURRENCY = 32  # create/delete requests in flight from the benchmark's client
FOREVER_INTERVAL_MS = 5000  # a line every 5 s per pod: the pods are alive but quiet
TIMEOUT_S = 600.0
# Runs per size at full size (`make bench` too): a 1000-pod run takes about 2 minutes per
# implementation on the shared 2-core host. 3, not 2: the median of two runs is their mean, and
# one slow run (5.3 s p50 against 3.0 s in the same full run) moved it by half the difference.
FULL_REPEATS = 3
# Sizes of at most SMALL_SIZE_PODS pods get SMALL_SIZE_REPEATS rounds unless --repeats says
# otherwise: a 100-pod round takes under a minute per implementation, and its create→Running
# p50 moves by 2x between rounds with the shared host's load (mostly in create→bound, the
# scheduler's share, the same for both), so 2 rounds cannot tell a 1.3x ratio from noise.
SMALL_SIZE_PODS = 100
SMALL_SIZE_REPEATS = 6
# Issue 16: wirelet / virtual-kubelet in the same run, at every size.


@dataclasses.dataclass
class Options:
    gateway_qps: int | None = None  # None: the gateway's default [kube] qps (--gateway-qps)
    sizes: list[Size] | None = None  # --sizes
    baseline: Path | None = None  # --baseline TREE: that tree's gateway measured too
    fixed_repeats: bool = False  # --repeats given: every size gets exactly that many


OPTIONS = Options()


def warms_up(size: Size, quick: bool) -> bool:
    """Sizes past SMALL_SIZE_PODS start with a round that is not counted: the first 1000-pod
    run on a control plane took twice as long as the ones after it (3.6-4.4 s p50 against
    1.7-1.9 s, whichever implementation went first), and round one's first place is always
    the same implementation's."""
    return not quick and size.pods > SMALL_SIZE_PODS


def repeats_at(size: Size, repeats: int, quick: bool) -> int:
    """Rounds at `size`: small sizes get SMALL_SIZE_REPEATS at least (cheap, and noisy)."""
    if quick or OPTIONS.fixed_repeats or size.pods > SMALL_SIZE_PODS:
        return repeats
    return max(repeats, SMALL_SIZE_REPEATS)


def sizes(quick: bool) -> list[Size]:
    if OPTIONS.sizes:
        return OPTIONS.sizes
    return [Size(20, 5)] if quick else [Size(100, 10), Size(1000, 50)]


def pod_body(name: str, wirelet: bool) -> dict[str, Any]:
    # Same pod for both; the affinity picks wirelet nodes (wirelet.io/transport) or the others.
    operator = "Exists" if wirelet else "DoesNotExist"
    term = {"matchExpressions": [{"key": "wirelet.io/transport", "operator": operator}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {"name": "main", "image": "forever", "args": [str(FOREVER_INTERVAL_MS)]}
            ],
            "nodeSelector": {"type": "virtual-kubelet"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
                }
            },
        },
    }


async def one_run(
    api: KubeApi,
    count: int,
    wirelet: bool,
    tag: str,
    *,
    within: float = TIMEOUT_S,
    cpu: CpuReader = lambda: {},
    why: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """`why`: what the processes serving the nodes say (which exited, their last lines), for
    the report of a stuck run."""
    namespace = f"bench-pods-{tag}-{uuid.uuid4().hex[:6]}"
    await common.make_namespace(api, namespace)
    # Each pod's moments (wall time): reported is the node's first status write.
    moments: list[dict[str, float]] = [{} for _ in range(6)]
    created, bound, reported, running, deleting, gone = moments
    latest: dict[str, dict[str, Any]] = {}  # each pod as last seen, to say why it is stuck

    def on_event(kind: str, obj: dict[str, Any], now: float) -> None:
        latest[name := obj["metadata"]["name"]] = obj
        if kind == "DELETED":
            gone.setdefault(name, now)
            return
        if (obj.get("spec") or {}).get("nodeName"):
            bound.setdefault(name, now)
        if (obj.get("status") or {}).get("containerStatuses"):
            reported.setdefault(name, now)
        if (obj.get("status") or {}).get("phase") == "Running":
            running.setdefault(name, now)

    watcher = Watcher(api, f"/api/v1/namespaces/{namespace}/pods", on_event)
    await watcher.start()
    sem = asyncio.Semaphore(CREATE_CONCURRENCY)
    names = [f"p{i:04d}" for i in range(count)]

    async def create(name: str) -> None:
        async with sem:
            created[name] = time.time()
            await api.create(f"/api/v1/namespaces/{namespace}/pods", pod_body(name, wirelet))

    async def delete(name: str) -> None:
        async with sem:
            deleting[name] = time.time()
            await api.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")

    async def wait_all(what: str, done: dict[str, float]) -> None:
        try:
            await common.wait_until(f"{count} pods {what}", lambda: len(done) >= count, within)
        except TimeoutError:
            stuck = [n for n in names if n not in done]
            cause = await describe_stuck(api, namespace, stuck, latest)
            processes = why()
            # The processes' state first: a serving process that exited is the cause to read.
            brief = f" ({processes.splitlines()[0].strip()})" if processes else ""
            raise StuckRun(
                f"{len(stuck)} of {count} pods not {what} within {within:.0f}s{brief}:\n{cause}"
                + (f"\n{processes}" if processes else "")
            ) from None

    writes_before = await snapshot(api, cpu)
    try:
        await asyncio.gather(*(create(n) for n in names))
        await wait_all("Running", running)
        writes_started = await snapshot(api, cpu)
        await asyncio.gather(*(delete(n) for n in names))
        await wait_all("gone", gone)
        writes_after = await snapshot(api, cpu)
        # Events are written apart from the pods (a kubelet's too), some after the pods are
        # gone; deleting the namespace now would have the API server refuse them unwritten
        # and leave their cost out. Their own span: until no event write has come for a while.
        settled = (await events_settled(api, namespace), await snapshot(api, cpu))
    finally:
        await watcher.stop()
        await common.delete_namespace(api, namespace)
    return _figures(
        names,
        {"created": created, "bound": bound, "reported": reported, "running": running},
        {"deleting": deleting, "gone": gone},
        (writes_before, writes_started, writes_after, settled[1]),
        settled[0],
    )


def _figures(
    names: list[str],
    start: dict[str, dict[str, float]],
    end: dict[str, dict[str, float]],
    writes: tuple[Snapshot, Snapshot, Snapshot, Snapshot],
    events_settled_s: float,
) -> dict[str, Any]:
    """One run's figures from each pod's moments (wall time) and the API server's counts."""
    count = len(names)
    created, bound, reported, running = (
        start[k] for k in ("created", "bound", "reported", "running")
    )
    deleting, gone = end["deleting"], end["gone"]
    writes_before, writes_started, writes_after, writes_settled = writes
    start_lat = [running[n] - created[n] for n in names]
    delete_lat = [gone[n] - deleting[n] for n in names]
    first = min(created.values())
    return {
        "create_to_running": common.latency_summary(start_lat),
        # The scheduler's share (same for both) and the node's share of create→Running.
        "create_to_bound": common.latency_summary([bound[n] - created[n] for n in names]),
        "bound_to_running": common.latency_summary([running[n] - bound[n] for n in names]),
        # The node's first status write: how long it took to react to the binding at all.
        "bound_to_reported": common.latency_summary(
            [reported.get(n, running[n]) - bound[n] for n in names]
        ),
        "pods_per_s": count / (max(running.values()) - first),
        "delete_to_gone": common.latency_summary(delete_lat),
        "delete_pods_per_s": count / (max(gone.values()) - min(deleting.values())),
        # API writes per pod (everyone's: the benchmark's create and delete, the scheduler's
        # binding and event, the node's status writes and events) until all Running, then
        # from the deletes until all gone.
        "api_writes_per_pod_start": writes_per_pod(writes_before[0], writes_started[0], count),
        "api_writes_per_pod_delete": writes_per_pod(writes_started[0], writes_after[0], count),
        "api_write_ms_start": write_latency_ms(writes_before[0], writes_started[0]),
        "api_write_ms_delete": write_latency_ms(writes_started[0], writes_after[0]),
        # CPU per pod, in ms, over the same two spans: the node side's processes (and the
        # emulated devices') and the control plane's, which share the host's cores with them.
        "cpu_ms_per_pod_start": writes_per_pod(writes_before[1], writes_started[1], count / 1e3),
        "cpu_ms_per_pod_delete": writes_per_pod(writes_started[1], writes_after[1], count / 1e3),
        # Events written after the last pod was gone (see `events_settled`), and their cost.
        "events_settled_s": round(events_settled_s, 2),
        "api_writes_per_pod_events": writes_per_pod(writes_after[0], writes_settled[0], count),
        "cpu_ms_per_pod_events": writes_per_pod(writes_after[1], writes_settled[1], count / 1e3),
    }


async def run_wirelet(
    cluster: LocalCluster,
    api: KubeApi,
    size: Size,
    repeats: int,
    workdir: Path,
    *,
    source: Path | None = None,
) -> dict[str, Any]:
    prefix = f"wb{uuid.uuid4().hex[:4]}-"
    device_dir = workdir / "devices"
    slots = -(-size.pods // size.nodes) * 2  # room to spare: the scheduler need not be exact
    emulator = await processes.start_emulator(
        device_dir, size.nodes, workdir / "emulator.log", task_slots=slots
    )
    qps = OPTIONS.gateway_qps
    kube = {"qps": qps, "burst": 2 * qps} if qps else None
    config = processes.gateway_config(cluster, workdir / "gw", device_dir, prefix, kube=kube)
    gateway = processes.gateway_child(config, workdir / "gateway.log", source=source)
    who = "wirelet (baseline)" if source else "wirelet"
    names = [f"{prefix}emu-{i:04d}" for i in range(size.nodes)]
    try:
        await gateway.start()
        ready_s = await wait_nodes_ready(
            api, names, TIMEOUT_S, lambda: process_state(gateway, emulator)
        )
        runs = []
        for i in range(repeats):
            runs.append(
                await one_run(
                    api,
                    size.pods,
                    True,
                    f"w{i}",
                    cpu=lambda: {
                        "node": cpu_seconds([gateway.pid]),
                        "devices": cpu_seconds([emulator.pid]),
                        **control_plane_cpu(cluster),
                    },
                    why=lambda: process_state(gateway, emulator),
                )
            )
            print_run(who, size, runs[-1])
        sampler = processes.ProcSampler(gateway.pid)
        rss = sampler.read()[2] / 1e6
    finally:
        await gateway.stop()
        await emulator.stop()
        await common.delete_nodes(api, names)
    return {"nodes_ready_s": ready_s, "gateway_rss_mb": rss, **summarize(runs)}


async def run_vk(
    cluster: LocalCluster, api: KubeApi, size: Size, repeats: int, workdir: Path
) -> dict[str, Any]:
    prefix = f"vk{uuid.uuid4().hex[:4]}-"
    slots = -(-size.pods // size.nodes) * 2
    fleet = VkFleet(cluster, workdir, prefix, size.nodes, slots)
    try:
        await fleet.start()
        ready_s = await wait_nodes_ready(api, fleet.names, TIMEOUT_S, fleet.describe)
        runs = []
        for i in range(repeats):
            runs.append(
                await one_run(
                    api,
                    size.pods,
                    False,
                    f"v{i}",
                    cpu=lambda: {
                        "node": cpu_seconds([p.pid for p in fleet.procs]),
                        **control_plane_cpu(cluster),
                    },
                    why=fleet.describe,
                )
            )
            print_run("virtual-kubelet", size, runs[-1])
        rss = fleet.rss_mb()
    finally:
        await fleet.stop()
        await common.delete_nodes(api, fleet.names)
    return {"nodes_ready_s": ready_s, "processes_rss_mb": rss, **summarize(runs)}


async def run(
    cluster: LocalCluster | None, quick: bool, repeats: int, with_vk: bool = True
) -> dict[str, Any]:
    vk_missing: str | None = None
    if with_vk:
        try:
            await asyncio.to_thread(build)
        except VkBuildError as exc:
            vk_missing = str(exc)
            say(f"virtual-kubelet baseline missing: {exc}")
    else:
        vk_missing = "disabled (--no-vk)"
    results = []
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        try:
            for size in sizes(quick):
                with tempfile.TemporaryDirectory(prefix="wirelet-bench-pods-") as tmp:
                    rounds = repeats_at(size, repeats, quick)
                    entry = await _measure_size(
                        cl,
                        api,
                        size,
                        rounds,
                        Path(tmp),
                        vk_missing=vk_missing,
                        warmup=warms_up(size, quick),
                    )
                    results.append(entry)
                    print_entry(entry)
        finally:
            await api.close()
    failures = [
        f"{who} at {e['pods']}x{e['nodes']}"
        for e in results
        for who in ("wirelet_baseline", "wirelet", "virtual_kubelet")
        if "failed" in e.get(who, {})
    ]
    return {
        "benchmark": "pods",
        "failed": failures,
        "machine": common.machine(),
        "quick": quick,
        "repeats": repeats,
        "baseline_missing": vk_missing,
        "gateway_qps": OPTIONS.gateway_qps or "default",
        "baseline": str(OPTIONS.baseline) if OPTIONS.baseline else None,
        "targets": TARGETS,
        "results": results,
    }


async def _measure_size(
    cl: LocalCluster,
    api: KubeApi,
    size: Size,
    repeats: int,
    work: Path,
    *,
    vk_missing: str | None,
    warmup: bool = False,
) -> dict[str, Any]:
    """Every implementation at one size, in rounds: each round runs each of them once (with its
    own fresh nodes), in the opposite order to the round before. The host is shared and its
    load drifts over minutes; all repeats of one implementation, then all of the next, put
    that drift between them and into their ratio."""
    measures: dict[str, Measure] = {}
    if OPTIONS.baseline is not None:
        source = OPTIONS.baseline
        measures["wirelet_baseline"] = lambda i: run_wirelet(
            cl, api, size, 1, work / f"b{i}", source=source
        )
    measures["wirelet"] = lambda i: run_wirelet(cl, api, size, 1, work / f"w{i}")
    if vk_missing is None:
        measures["virtual_kubelet"] = lambda i: run_vk(cl, api, size, 1, work / f"v{i}")
    return await in_rounds(measures, size, repeats, warmup=warmup)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pods", description=__doc__)
    common.add_run_options(
        parser,
        quick_help="20 pods over 5 nodes",
        repeats=(FULL_REPEATS, 2),
        what=f"runs per size; without it, sizes of up to {SMALL_SIZE_PODS} pods get "
        f"{SMALL_SIZE_REPEATS}",
    )
    parser.add_argument("--no-vk", action="store_true", help="skip the virtual-kubelet baseline")
    parser.add_argument("--gateway-qps", type=int, help="the gateway's [kube] qps (burst 2x)")
    parser.add_argument("--sizes", nargs="*", help="PODSxNODES, e.g. 100x10 1000x50")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="TREE",
        help="also measure the gateway of another source tree (e.g. `git archive main`), "
        "before this one, on the same control plane",
    )
    args = parser.parse_args(argv)
    repeats = common.repeats_of(args)
    OPTIONS.fixed_repeats = args.repeats is not None
    OPTIONS.gateway_qps = args.gateway_qps
    OPTIONS.baseline = args.baseline.resolve() if args.baseline else None
    if args.sizes:
        OPTIONS.sizes = [Size(*map(int, text.split("x"))) for text in args.sizes]
    report = asyncio.run(run(None, args.quick, repeats, not args.no_vk))
    common.write_result("pods", report)
    if report["failed"]:
        raise SystemExit(f"bench.pods FAILED: stuck runs of {', '.join(report['failed'])}")


if __name__ == "__main__":
    main()
