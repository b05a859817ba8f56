"""What a pod status write costs the API server: a JSON merge patch (the gateway before) against a
PUT of the pod as last seen (gateway.kube.status_write, as virtual-kubelet's UpdateStatus).

    python -m bench.status_write [--quick] [--repeats R]

400 pods (40 with --quick) bound to a node that does not exist (nothing else writes them) on
the benchmarks' local control plane; then, R times (4), every pod's status written once each
way, the two ways taking turns in alternating order, 50 writes in flight, each a Running
status as the gateway builds it (`pod_status`). Figures per way: CPU of kube-apiserver and etcd
per write (their utime + stime over the span, with their share of idle work in it) and the
writes' wall time. Median and min..max over the repeats. Both ways go through the same client
(gateway.kube.api).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench import common
from bench.common import say
from bench.run_costs import cpu_seconds
from gateway.kube.api import KubeApi
from gateway.kube.pod_status import pod_status
from gateway.kube.status_write import merge_patch
from gateway.runtime.model import ContainerPhase, ContainerState, ContainerStatus, RestartPolicy
from hil.cluster.local import LocalCluster

NODE = "bench-status-write"  # never registered: no kubelet or controller writes these pods
IN_FLIGHT = 50
PODS = 400
QUICK_PODS = 40
REPEATS = 4
WAYS = ("merge patch", "put")


def _status(restart: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    container = ContainerStatus("main", "forever", ready=True, restart_count=restart)
    container.state = ContainerState(ContainerPhase.RUNNING, started_at=now, task_id=f"t-{restart}")
    return pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[container],
        host_ip="127.0.0.1",
        start_time=now,
        now=now,
        node_ready=True,
    )


async def _pods_now(api: KubeApi, namespace: str) -> dict[str, dict[str, Any]]:
    """Every pod as stored now (what the gateway has from its watch), by name."""
    listing = await api.get(f"/api/v1/namespaces/{namespace}/pods")
    return {
        item["metadata"]["name"]: {"apiVersion": "v1", "kind": "Pod", **item}
        for item in listing["items"]
    }


async def _write_all(api: KubeApi, pods: dict[str, dict[str, Any]], way: str, n: int) -> None:
    """Every pod's status once, `way`; each write differs from the last (restart count `n`)."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        status = _status(n)
        async with gate:
            if way == "put":
                body = {**pod, "status": merge_patch(pod.get("status") or {}, status)}
                await api.replace(path, body, answer=False)
            else:
                patch = {"metadata": {"uid": meta["uid"]}, "status": status}
                await api.patch(path, patch, kind="merge", answer=False)

    await asyncio.gather(*(one(pod) for pod in pods.values()))


async def measure(
    cluster: LocalCluster, pods: int, repeats: int
) -> dict[str, dict[str, dict[str, float]]]:
    api = await common.admin_api(cluster)
    namespace = f"bench-status-{uuid.uuid4().hex[:6]}"
    control_plane = [cluster.pids["kube-apiserver"], cluster.pids["etcd"]]
    runs: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    try:
        await common.make_namespace(api, namespace)
        names = [f"p{i}" for i in range(pods)]
        for name in names:
            await api.create(
                f"/api/v1/namespaces/{namespace}/pods",
                {
                    "metadata": {"name": name},
                    "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "x"}]},
                },
            )
        n = 0
        for i in range(repeats):
            for way in WAYS if i % 2 == 0 else reversed(WAYS):
                n += 1
                # The copies the writes start from, listed before the span (the gateway has
                # them from its watch): the list is not counted.
                current = await _pods_now(api, namespace)
                before = cpu_seconds(control_plane)
                started = time.monotonic()
                await _write_all(api, current, way, n)
                wall = time.monotonic() - started
                cpu = cpu_seconds(control_plane) - before
                runs[way].append((cpu * 1e3 / pods, wall))
                per_write = cpu * 1e3 / pods
                say(f"  round {i + 1} {way:>11}: {per_write:5.2f} ms CPU per write, {wall:.2f} s")
    finally:
        await common.delete_namespace(api, namespace)
        await api.close()
    return {
        way: {
            "cpu_ms_per_write": common.spread(cpu for cpu, _ in runs[way]),
            "wall_s": common.spread(wall for _, wall in runs[way]),
        }
        for way in WAYS
    }


async def run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    pods = QUICK_PODS if quick else PODS
    async with common.cluster_or(cluster) as cl:
        say(f"status writes: {pods} pods, {repeats} rounds of each way")
        ways = await measure(cl, pods, repeats)
    patch, put = (ways[way]["cpu_ms_per_write"]["median"] for way in WAYS)
    for way in WAYS:
        say(
            f"  {way:>11}: {common.fmt(ways[way]['cpu_ms_per_write'], ' ms', 2)} API server + etcd "
            f"CPU per write, {common.fmt(ways[way]['wall_s'], ' s', 2)} for {pods} writes"
        )
    say(f"  put / merge patch: {put / patch:.2f}x the API server's CPU per write")
    report = {
        "benchmark": "status_write",
        "machine": common.machine(),
        "quick": quick,
        "pods": pods,
        "in_flight": IN_FLIGHT,
        "ways": ways,
        "put_over_patch_cpu": put / patch,
    }
    common.write_result("status_write", report)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.status_write", description=__doc__)
    common.add_run_options(
        parser, quick_help=f"{QUICK_PODS} pods", repeats=(REPEATS, 2), what="rounds of each way"
    )
    args = parser.parse_args(argv)
    asyncio.run(run(None, args.quick, common.repeats_of(args)))


if __name__ == "__main__":
    main()
