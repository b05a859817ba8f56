"""Scale: many emulated devices on one gateway.

    python -m bench.scale [--quick] [--window SECONDS]

For 100, 500 and 1000 devices (quick: 50) in one `python -m hil.emulator` process and one gateway
process (`python -m gateway.cli run`, default config: lease renewed every 10 s, node status at
least every 60 s):

- time from the gateway's start until every node is Ready (watched);
- the gateway's steady-state CPU (% of one core, from /proc utime+stime) and RSS over a window
  after all nodes are Ready, median and min..max over 5-second slices; the API server's, etcd's
  and the emulator's CPU over the same window, since on a small host they share the cores;
- the share of lease renewals made on time: every gap between consecutive `renewTime`s of a
  node's Lease (watched in kube-node-lease) within the renew interval plus the gateway's grace.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import common
from bench.common import ProcSampler, Watcher, say, spread
from bench.pods import wait_nodes_ready
from gateway.config import NodeConfig
from gateway.kube.api import KubeApi
from gateway.kube.node_agent import LEASE_LATE_GRACE_S
from hil.cluster.local import LocalCluster

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
SLICE_S = 5.0
SETTLE_S = 5.0  # after the last node is Ready, before the steady window starts
TARGETS = {"cpu_percent_max": 20.0, "rss_mb_max": 300.0, "lease_on_time_share_min": 1.0}


def sizes(quick: bool) -> list[int]:
    return [50] if quick else [100, 500, 1000]


def _renew_time(lease: dict[str, Any]) -> float | None:
    text = (lease.get("spec") or {}).get("renewTime")
    if not text:
        return None
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


async def _profile(pid: int, seconds: float, path: Path) -> asyncio.subprocess.Process:
    """py-spy over the steady window only (start-up would swamp the idle profile)."""
    spy = str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw", "-o", str(path)]
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)


async def one_size(
    cluster: LocalCluster,
    api: KubeApi,
    devices: int,
    window: float,
    workdir: Path,
    *,
    profile: Path | None = None,
) -> dict[str, Any]:
    prefix = f"sc{uuid.uuid4().hex[:4]}-"
    names = [f"{prefix}emu-{i:04d}" for i in range(devices)]
    wanted = set(names)
    interval = NodeConfig().lease_renew_interval_s
    renewals: dict[str, list[float]] = {n: [] for n in names}

    def on_lease(_kind: str, obj: dict[str, Any], _now: float) -> None:
        name = obj["metadata"]["name"]
        stamp = _renew_time(obj)
        if name in wanted and stamp is not None:
            seen = renewals[name]
            if not seen or seen[-1] != stamp:
                seen.append(stamp)

    emulator = await common.start_emulator(workdir / "devices", devices, workdir / "emulator.log")
    config = common.gateway_config(cluster, workdir / "gw", workdir / "devices", prefix)
    gateway = common.gateway_child(config, workdir / "gateway.log")
    leases = Watcher(api, f"{LEASES}", on_lease)
    await leases.start()
    try:
        await gateway.start()
        ready_s = await wait_nodes_ready(api, names, 120 + devices)
        say(f"  {devices} devices: all nodes Ready {ready_s:.1f}s after the gateway started")
        await asyncio.sleep(SETTLE_S)
        samplers = {"gateway": ProcSampler(gateway.pid), "emulator": ProcSampler(emulator.pid)}
        for component, pid in cluster.pids.items():
            if component in ("kube-apiserver", "etcd"):
                samplers[component] = ProcSampler(pid)
        for sampler in samplers.values():
            sampler.start()
        spy = await _profile(gateway.pid, window, profile) if profile else None
        window_start = time.time()
        await asyncio.sleep(window)
        window_end = time.time()
        if spy is not None:
            await spy.wait()
        for sampler in samplers.values():
            await sampler.stop()
    finally:
        await leases.stop()
        await gateway.stop()
        await emulator.stop()
        await common.delete_nodes(api, names)
        await common.delete_all(api, (f"{LEASES}/{name}" for name in names))
    gaps: list[float] = []
    renewing = 0
    for stamps in renewals.values():
        inside = [t for t in stamps if window_start - interval - 2 <= t <= window_end]
        renewing += any(t >= window_start for t in inside)
        gaps += [b - a for a, b in itertools.pairwise(inside) if b >= window_start]
    on_time = sum(g <= interval + LEASE_LATE_GRACE_S for g in gaps)
    gw = samplers["gateway"]
    result: dict[str, Any] = {
        "devices": devices,
        "nodes_ready_s": ready_s,
        "window_s": window,
        "gateway_cpu_percent": spread(gw.cpu_percent_slices(SLICE_S)),
        "gateway_rss_mb": spread(gw.rss_mb()),
        "lease_renewals": len(gaps),
        "lease_on_time": on_time,
        "lease_on_time_share": on_time / len(gaps) if gaps else float("nan"),
        "lease_gap_s": common.latency_summary(gaps) if gaps else {},
        "nodes_renewing_in_window": renewing,
        "others_cpu_percent": {
            k: spread(s.cpu_percent_slices(SLICE_S)) for k, s in samplers.items() if k != "gateway"
        },
    }
    result["targets_met"] = {
        "cpu": result["gateway_cpu_percent"]["median"] < TARGETS["cpu_percent_max"],
        "rss": result["gateway_rss_mb"]["max"] < TARGETS["rss_mb_max"],
        "leases": bool(gaps) and on_time == len(gaps) and renewing == devices,
    }
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    others = ", ".join(f"{k} {common.fmt(v, '%')}" for k, v in r["others_cpu_percent"].items())
    say(
        f"  {r['devices']:5d} devices: Ready in {r['nodes_ready_s']:.1f}s; gateway CPU "
        f"{common.fmt(r['gateway_cpu_percent'], '%')} of one core, RSS "
        f"{common.fmt(r['gateway_rss_mb'], ' MB')}; leases on time {r['lease_on_time']}/"
        f"{r['lease_renewals']} ({100 * r['lease_on_time_share']:.1f}%), "
        f"{r['nodes_renewing_in_window']} nodes renewing; [{others}]"
    )


async def run(
    cluster: LocalCluster | None,
    quick: bool,
    window: float | None = None,
    devices: list[int] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    window_s = window or (20.0 if quick else 60.0)
    results = []
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        try:
            for count in devices or sizes(quick):
                with tempfile.TemporaryDirectory(prefix="wirelet-bench-scale-") as tmp:
                    spy = profile.with_suffix(f".{count}.txt") if profile else None
                    results.append(await one_size(cl, api, count, window_s, Path(tmp), profile=spy))
        finally:
            await api.close()
    return {
        "benchmark": "scale",
        "machine": common.machine(),
        "quick": quick,
        "targets": TARGETS,
        "lease_renew_interval_s": NodeConfig().lease_renew_interval_s,
        "lease_late_grace_s": LEASE_LATE_GRACE_S,
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 devices, 20 s window")
    parser.add_argument("--window", type=float, help="steady window in seconds (60; quick 20)")
    parser.add_argument("--devices", type=int, nargs="*", help="override the sizes")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the gateway over each window: PATH.<devices>.txt"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(run(None, args.quick, args.window, args.devices, args.profile))
    common.write_result("scale", report)


if __name__ == "__main__":
    main()
