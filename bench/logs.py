"""Logs: how soon a device's line reaches `kubectl logs -f`, and log throughput via the kubelet API.

    python -m bench.logs [--quick] [--repeats N]

The emulated devices run in this process, so the device and the reader share one clock: a `stamp`
app (a `counter` whose lines carry the device's wall time when the line was produced) prints a
line every 50 ms on a device paced at 115200 baud; `kubectl logs -f` reads them through the API
server and the gateway's kubelet API, and each line's latency is its arrival time minus its stamp
(p50, p99 per run; median and min..max over runs).

Throughput: a `flood` pod on an unthrottled device writes several MB; once it has exited, the
whole log is fetched through the API server's `pods/log` (which proxies the gateway's
`/containerLogs`) with the benchmark's HTTP client, MB/s over repeated fetches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.common import say, spread
from bench.pods import wait_nodes_ready
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster
from hil.emulator.apps import APPS, CounterApp
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile

STAMP_INTERVAL_MS = 50


class StampApp(CounterApp):
    """`counter N INTERVAL_MS` whose lines are "n <wall time when the device produced it>"."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        super().__init__(argv, env, now)

    def line(self, n: int) -> str:
        return f"{n} {time.time():.6f}\n"


def _pod(name: str, node: str, image: str, args: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": node,
            "containers": [{"name": "main", "image": image, "args": args}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        },
    }


async def _wait_phase(api: KubeApi, path: str, phases: tuple[str, ...], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pod = await api.get(path)
        if (pod.get("status") or {}).get("phase") in phases:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{path} not in {phases}")


async def follow_latency(
    cluster: LocalCluster, api: KubeApi, namespace: str, node: str, *, lines: int, tag: str
) -> dict[str, Any]:
    name = f"stamp-{tag}"
    await api.create(
        f"/api/v1/namespaces/{namespace}/pods",
        _pod(name, node, "counter", [str(lines), str(STAMP_INTERVAL_MS)]),
    )
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    await _wait_phase(api, path, ("Running", "Succeeded"), 60)
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={cluster.kubeconfig}",
        "logs",
        "-f",
        "-n",
        namespace,
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    latencies: list[float] = []
    attached: float | None = None
    try:
        async with asyncio.timeout(60 + lines * STAMP_INTERVAL_MS / 1000):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                now = time.time()
                parts = raw.split()
                if len(parts) != 2:
                    continue
                stamp = float(parts[1])
                # Lines already in the log when the stream attached are history, not latency.
                if attached is None and now - stamp < 1.0:
                    attached = stamp
                if attached is not None and stamp >= attached:
                    latencies.append(now - stamp)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    return common.latency_summary(latencies)


async def fetch_throughput(
    api: KubeApi, namespace: str, node: str, size: int, repeats: int
) -> dict[str, Any]:
    name = "flood"
    await api.create(f"/api/v1/namespaces/{namespace}/pods", _pod(name, node, "flood", [str(size)]))
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    await _wait_phase(api, path, ("Succeeded", "Failed"), 300)
    url = f"{api.base}{path}/log"
    rates = []
    got = 0
    for _ in range(repeats):
        started = time.perf_counter()
        async with api._client().get(url, headers=await api._headers("text/plain")) as response:
            got = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                got += len(chunk)
        rates.append(got / (time.perf_counter() - started) / 1e6)
    return {"bytes": got, "mb_per_s": spread(rates)}


async def run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    # The emulator in this process serves `counter` with stamped lines (profiles only offer the
    # built-in app names); restored on the way out.
    original = APPS["counter"]
    APPS["counter"] = StampApp
    try:
        return await _run(cluster, quick, repeats)
    finally:
        APPS["counter"] = original


async def _run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    lines = 60 if quick else 400
    flood = (1 if quick else 8) * 1024 * 1024
    suffix = uuid.uuid4().hex[:4]
    prefix = f"lg{suffix}-"
    profiles = [
        DeviceProfile(device_id="paced", baud=115200),
        DeviceProfile(device_id="fast", baud=None, output_buffer=1 << 20),
    ]
    names = [f"{prefix}paced", f"{prefix}fast"]
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        namespace = f"bench-logs-{suffix}"
        with tempfile.TemporaryDirectory(prefix="wirelet-bench-logs-") as tmp:
            work = Path(tmp)
            config = common.gateway_config(cl, work / "gw", work / "devices", prefix)
            gateway = common.gateway_child(config, work / "gateway.log")
            try:
                async with EmulatedFleet(work / "devices", profiles, control_socket=False):
                    await gateway.start()
                    await wait_nodes_ready(api, names, 120)
                    await common.make_namespace(api, namespace)
                    runs = []
                    for i in range(repeats):
                        run_i = await follow_latency(
                            cl, api, namespace, names[0], lines=lines, tag=f"{i}"
                        )
                        runs.append(run_i)
                        say(
                            f"  logs -f latency run {i}: p50 {runs[-1]['p50_ms']:.1f} ms, "
                            f"p99 {runs[-1]['p99_ms']:.1f} ms over {runs[-1]['count']:.0f} lines"
                        )
                    throughput = await fetch_throughput(api, namespace, names[1], flood, 5)
            finally:
                await gateway.stop()
                await common.delete_namespace(api, namespace)
                await common.delete_nodes(api, names)
                await api.close()
    report: dict[str, Any] = {
        "benchmark": "logs",
        "machine": common.machine(),
        "quick": quick,
        "stamp_interval_ms": STAMP_INTERVAL_MS,
        "lines_per_run": lines,
        "device_baud": 115200,
        "follow_latency": {
            "p50_ms": spread(r["p50_ms"] for r in runs),
            "p99_ms": spread(r["p99_ms"] for r in runs),
            "runs": runs,
        },
        "kubelet_api_log_fetch": throughput,
    }
    f: dict[str, Any] = report["follow_latency"]
    say(
        f"logs -f: device line → kubectl p50 {common.fmt(f['p50_ms'], ' ms')}, "
        f"p99 {common.fmt(f['p99_ms'], ' ms')}; pods/log fetch of "
        f"{throughput['bytes'] / 1e6:.1f} MB: {common.fmt(throughput['mb_per_s'], ' MB/s')}"
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.logs", description=__doc__)
    common.add_run_options(
        parser, quick_help="fewer lines, a smaller flood", repeats=(5, 2), what="follow runs"
    )
    args = parser.parse_args(argv)
    common.write_result("logs", asyncio.run(run(None, args.quick, common.repeats_of(args))))


if __name__ == "__main__":
    main()
