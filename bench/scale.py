"""Scale: many emulated devices on one gateway, several gateways on one control plane, and what
the API server pays per device.

    python -m bench.scale [--quick] [--window SECONDS] [--devices N ...]
                          [--gateways G --per-gateway N] [--baseline TREE] [--profile PATH]

Runs, each with the shipped defaults (lease renewed every 10 s, node status re-posted every
5 min unchanged, per-node kubelet endpoints):

- one gateway with 100 and 1000 devices (quick: 50; `--devices` for others), in one
  `python -m hil.emulator` process and one gateway process (`python -m gateway.cli run`);
- 3 gateways x 300 devices (quick: 2 x 25) on the same control plane, each its own process,
  state_dir, device directory and emulator, as three hosts would run them.

For each run: the time from the gateways' start until every node is Ready (watched); then the
wait until the controller manager is done with the new nodes (it GETs and PATCHes each node and
posts an event, at its own QPS: minutes for 1000 nodes, which a window started at once would
count as steady load); each gateway's steady-state CPU (% of one core, from /proc utime+stime)
and RSS over the window that follows, median and min..max over 5-second slices; the API
server's, etcd's and the emulators' CPU over the same window; the share of lease renewals made
on time (every gap between consecutive `renewTime`s of a node's Lease, watched, within the
renew interval plus the gateway's grace); and the API requests the gateways sent in the
window, from the API server's own `apiserver_request_total` less its rate over an idle window
measured first (the controllers' and scheduler's own traffic).

From the largest one-gateway run: requests/s per device (against a kubelet's), the API server's
CPU per request and per device, and how many devices one gateway serves before the API server
(rather than the gateway) runs out of a core, in steady state and at the default QPS budget.

`--baseline TREE` runs every one-gateway size with the gateway of another source tree first
(`git worktree add /tmp/main main`, say): a before/after from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import common, processes
from bench.common import Watcher, say, spread
from bench.control_plane import (
    IDLE_WINDOW_S,
    Idle,
    control_plane_samplers,
    measure_idle,
    rates,
    request_counts,
    settle,
)
from bench.processes import Child, ProcSampler
from bench.scale_limit import api_server_limit
from bench.stuck import wait_nodes_ready
from gateway.config import NodeConfig
from gateway.kube.api import KubeApi
from gateway.kube.node_agent import LEASE_LATE_GRACE_S
from hil.cluster.local import LocalCluster

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
SLICE_S = 5.0
TARGETS = {"cpu_percent_max": 10.0, "rss_mb_max": 200.0, "lease_on_time_share_min": 1.0}


def sizes(quick: bool) -> list[int]:
    return [50] if quick else [100, 1000]


def _renew_time(lease: dict[str, Any]) -> float | None:
    text = (lease.get("spec") or {}).get("renewTime")
    if not text:
        return None
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


# -- one run: G gateways x N devices ----------------------------------------------------------


async def _profile(pid: int, seconds: float, path: Path) -> asyncio.subprocess.Process:
    """py-spy over the steady window only (start-up would swamp the idle profile)."""
    spy = str(Path(sys.executable).parent / "py-spy")
    # --nonblocking: py-spy's default stops the process for every sample; at 1000 devices that
    # made a third of the lease renewals late in a profiled run (none without py-spy).
    argv = [spy, "record", "--nonblocking", "-p", str(pid), "-d", str(int(seconds))]
    argv += ["-f", "raw", "-o", str(path)]
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)


@dataclass
class Run:
    """What one run is: `gateways` gateways with `devices` devices each."""

    gateways: int
    devices: int
    tree: str = "this"  # "this", or "baseline" (the gateway of --baseline's tree)
    source: Path | None = None
    profile: Path | None = None


async def one_run(
    cluster: LocalCluster, api: KubeApi, run: Run, *, window: float, idle: Idle, workdir: Path
) -> dict[str, Any]:
    interval = NodeConfig().lease_renew_interval_s
    prefixes = [f"sc{uuid.uuid4().hex[:4]}{g}-" for g in range(run.gateways)]
    names = [f"{p}emu-{i:04d}" for p in prefixes for i in range(run.devices)]
    wanted = set(names)
    renewals: dict[str, list[float]] = {n: [] for n in names}

    def on_lease(_kind: str, obj: dict[str, Any], _now: float) -> None:
        name = obj["metadata"]["name"]
        stamp = _renew_time(obj)
        if name in wanted and stamp is not None:
            seen = renewals[name]
            if not seen or seen[-1] != stamp:
                seen.append(stamp)

    emulators: list[Child] = []
    gateways: list[Child] = []
    leases = Watcher(api, LEASES, on_lease)
    await leases.start()
    try:
        await _start_hosts(cluster, run, prefixes, workdir, emulators=emulators, gateways=gateways)
        steady = await _until_steady(api, idle, run, names)
        if steady.get("failed"):
            return {"gateways": run.gateways, "devices": run.devices, "tree": run.tree, **steady}
        samplers = {f"gateway{g}": ProcSampler(gw.pid) for g, gw in enumerate(gateways)}
        samplers |= {f"emulator{g}": ProcSampler(em.pid) for g, em in enumerate(emulators)}
        samplers |= control_plane_samplers(cluster)
        for sampler in samplers.values():
            sampler.start()
        spy = await _profile(gateways[0].pid, window, run.profile) if run.profile else None
        counts_before, counted_from, window_start = (
            await request_counts(api),
            time.monotonic(),
            time.time(),
        )
        await asyncio.sleep(window)
        window_end = time.time()
        counts_after = await request_counts(api)
        counted_s = time.monotonic() - counted_from
        if spy is not None:
            await spy.wait()
        for sampler in samplers.values():
            await sampler.stop()
    finally:
        await leases.stop()
        for child in gateways + emulators:
            await child.stop()
        await common.delete_nodes(api, names)
        await common.delete_all(api, (f"{LEASES}/{name}" for name in names))
    gaps, renewing = _lease_gaps(renewals, window_start, window_end, interval)
    on_time = sum(g <= interval + LEASE_LATE_GRACE_S for g in gaps)
    gateway_rates = idle.less(rates(counts_before, counts_after, counted_s))
    per_gateway_cpu = [samplers[f"gateway{g}"] for g in range(run.gateways)]
    result: dict[str, Any] = {
        "gateways": run.gateways,
        "devices": run.devices,  # per gateway
        "tree": run.tree,
        **steady,
        "window_s": window,
        # The busiest gateway's slices (one gateway: its own).
        "gateway_cpu_percent": max(
            (spread(s.cpu_percent_slices(SLICE_S)) for s in per_gateway_cpu),
            key=lambda s: s["median"],
        ),
        "gateway_cpu_percent_each": [s.cpu_percent_total() for s in per_gateway_cpu],
        "gateway_rss_mb": spread(max(s.rss_mb()) for s in per_gateway_cpu),
        "lease_renewals": len(gaps),
        "lease_on_time": on_time,
        "lease_on_time_share": on_time / len(gaps) if gaps else float("nan"),
        "lease_gap_s": common.latency_summary(gaps) if gaps else {},
        "nodes_renewing_in_window": renewing,
        "api_requests_per_s": dict(sorted(gateway_rates.items(), key=lambda kv: -kv[1])),
        "api_requests_per_s_total": sum(gateway_rates.values()),
        "others_cpu_percent": {
            k: spread(s.cpu_percent_slices(SLICE_S))
            for k, s in samplers.items()
            if not k.startswith(("gateway", "emulator"))
        },
        "emulators_cpu_percent": sum(
            s.cpu_percent_total() for k, s in samplers.items() if k.startswith("emulator")
        ),
        "control_plane_cpu_percent": {
            k: s.cpu_percent_total()
            for k, s in samplers.items()
            if not k.startswith(("gateway", "emulator"))
        },
    }
    result["targets_met"] = {
        "cpu": result["gateway_cpu_percent"]["median"] < TARGETS["cpu_percent_max"],
        "rss": result["gateway_rss_mb"]["max"] < TARGETS["rss_mb_max"],
        "leases": bool(gaps) and on_time == len(gaps) and renewing == len(names),
    }
    _print(result)
    return result


async def _start_hosts(
    cluster: LocalCluster,
    run: Run,
    prefixes: list[str],
    workdir: Path,
    *,
    emulators: list[Child],
    gateways: list[Child],
) -> None:
    """One emulator and one gateway per host, each with its own state_dir, device directory
    and logs; appended as started, so the caller stops what did start."""
    for g, prefix in enumerate(prefixes):
        host = workdir / f"host{g}"
        emulators.append(
            await processes.start_emulator(host / "devices", run.devices, host / "emulator.log")
        )
        config = processes.gateway_config(cluster, host / "gw", host / "devices", prefix)
        gateways.append(processes.gateway_child(config, host / "gateway.log", source=run.source))
    for gateway in gateways:
        await gateway.start()


async def _until_steady(api: KubeApi, idle: Idle, run: Run, names: list[str]) -> dict[str, Any]:
    """Every node Ready, then the controllers done with them; or why not (a stuck run is a
    result with its cause, and the next run still goes)."""
    bound = 60.0 + 0.3 * len(names)
    try:
        ready_s = await wait_nodes_ready(api, names, bound)
    except TimeoutError:
        failed = f"not every node Ready within {bound:.0f}s: see the gateway logs"
        say(f"  {_label(run)}: FAILED: {failed}")
        return {"failed": failed}
    say(f"  {_label(run)}: all nodes Ready {ready_s:.1f}s after the gateways started")
    settle_s, settled = await settle(api, idle, len(names))
    say(
        f"  the controllers were done with the new nodes {settle_s:.0f}s later"
        if settled
        else f"  the controllers were still busy with the new nodes after {settle_s:.0f}s"
    )
    return {"nodes_ready_s": ready_s, "settle_s": settle_s, "settled": settled}


@contextlib.contextmanager
def _workdir() -> Iterator[str]:
    """A run's directory, deleted after it unless WIRELET_BENCH_KEEP names where to keep it
    (the gateways' and emulators' logs of a run to look into)."""
    keep = os.environ.get("WIRELET_BENCH_KEEP")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield tempfile.mkdtemp(prefix="scale-", dir=keep)
        return
    with tempfile.TemporaryDirectory(prefix="wirelet-bench-scale-") as tmp:
        yield tmp


def _lease_gaps(
    renewals: dict[str, list[float]], start: float, end: float, interval: float
) -> tuple[list[float], int]:
    """Gaps between consecutive renewals ending in the window; how many nodes renewed in it."""
    gaps: list[float] = []
    renewing = 0
    for stamps in renewals.values():
        inside = [t for t in stamps if start - interval - 2 <= t <= end]
        renewing += any(t >= start for t in inside)
        gaps += [b - a for a, b in itertools.pairwise(inside) if b >= start]
    return gaps, renewing


def _label(run: Run) -> str:
    count = f"{run.devices} devices" if run.gateways == 1 else f"{run.gateways} x {run.devices}"
    return count + (" [baseline]" if run.tree == "baseline" else "")


def _print(r: dict[str, Any]) -> None:
    others = ", ".join(f"{k} {common.fmt(v, '%')}" for k, v in r["others_cpu_percent"].items())
    who = "gateway" if r["gateways"] == 1 else f"busiest of {r['gateways']} gateways"
    label = _label(Run(r["gateways"], r["devices"], r["tree"]))
    say(
        f"  {label}: Ready in {r['nodes_ready_s']:.1f}s; {who} CPU "
        f"{common.fmt(r['gateway_cpu_percent'], '%')} of one core, RSS "
        f"{common.fmt(r['gateway_rss_mb'], ' MB')}; leases on time {r['lease_on_time']}/"
        f"{r['lease_renewals']} ({100 * r['lease_on_time_share']:.1f}%), "
        f"{r['nodes_renewing_in_window']} nodes renewing; {r['api_requests_per_s_total']:.1f} "
        f"API requests/s; [{others}, emulators {r['emulators_cpu_percent']:.1f}%]"
    )


# -- the benchmark ----------------------------------------------------------------------------


async def run(
    cluster: LocalCluster | None,
    quick: bool,
    window: float | None = None,
    devices: list[int] | None = None,
    *,
    gateways: int | None = None,
    per_gateway: int | None = None,
    baseline: Path | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    window_s = window or (20.0 if quick else 60.0)
    multi = (
        gateways if gateways is not None else (2 if quick else 3),
        per_gateway or (25 if quick else 300),
    )
    plan: list[Run] = []
    for count in devices or sizes(quick):
        spy = profile.with_suffix(f".{count}.txt") if profile else None
        if baseline is not None:
            base_spy = profile.with_suffix(f".{count}.baseline.txt") if profile else None
            plan.append(Run(1, count, "baseline", baseline, base_spy))
        plan.append(Run(1, count, profile=spy))
    if multi[0] > 1:
        plan.append(Run(*multi))
    results = []
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        try:
            idle = await measure_idle(cl, api)
            for one in plan:
                with _workdir() as tmp:
                    results.append(
                        await one_run(cl, api, one, window=window_s, idle=idle, workdir=Path(tmp))
                    )
        finally:
            await api.close()
    singles = [
        r for r in results if r["gateways"] == 1 and r["tree"] == "this" and not r.get("failed")
    ]
    limit = api_server_limit(max(singles, key=lambda r: r["devices"]), idle) if singles else {}
    return {
        "benchmark": "scale",
        "machine": common.machine(),
        "quick": quick,
        "targets": TARGETS,
        "lease_renew_interval_s": NodeConfig().lease_renew_interval_s,
        "lease_late_grace_s": LEASE_LATE_GRACE_S,
        "idle_control_plane": {
            "request_rates": idle.request_rates,
            "cpu_percent": idle.cpu_percent,
            "window_s": IDLE_WINDOW_S,
            "after_waiting": idle.before,
        },
        "results": results,
        "api_server_limit": limit,
        "failed": "; ".join(
            f"{_label(Run(r['gateways'], r['devices'], r['tree']))}: {r['failed']}"
            for r in results
            if r.get("failed")
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="50 devices, 2 x 25, 20 s window")
    parser.add_argument("--window", type=float, help="steady window in seconds (60; quick 20)")
    parser.add_argument("--devices", type=int, nargs="*", help="one-gateway sizes (100 1000)")
    parser.add_argument("--gateways", type=int, help="gateways of the multi run (3; 0: none)")
    parser.add_argument("--per-gateway", type=int, help="devices per gateway there (300)")
    parser.add_argument("--baseline", type=Path, help="another source tree: its gateway first")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the gateway over each window: PATH.<devices>.txt"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = asyncio.run(
        run(
            None,
            args.quick,
            args.window,
            args.devices,
            gateways=args.gateways,
            per_gateway=args.per_gateway,
            baseline=args.baseline,
            profile=args.profile,
        )
    )
    report["elapsed_s"] = time.monotonic() - started
    common.write_result("scale", report)


if __name__ == "__main__":
    main()
