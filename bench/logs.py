"""Logs: how soon a device's line reaches `kubectl logs -f`, and log throughput via the kubelet API.

    python -m bench.logs [--quick] [--repeats N] [--baseline TREE] [--flood-mb MB]

The emulated devices run in this process, so the device and the reader share one clock: a `stamp`
app (a `counter` whose lines carry the device's wall time when the line was produced) prints a
line every 50 ms on a device paced at 115200 baud; `kubectl logs -f` reads them through the API
server and the gateway's kubelet API, and each line's latency is its arrival time minus its stamp
(p50, p99 per run, over the lines produced after the first one arrived; median and min..max
over runs). First with nothing else going on; then (2 runs, quick 1) while each gateway writes
the flood below from another of its devices, which shows what other devices' output costs a
follower (each run records whether its gateway's flood was still going when it ended).

Throughput: a `flood` pod on an unthrottled device (emulated in a process of its own, so its
work does not delay this process's reading of kubectl) writes 16 MiB of 16-byte lines (quick: 8),
some 50 MB of CRI records: the 5 files of 10 MiB a container's log is kept at. Once it has
exited, the whole log is fetched through the API server's `pods/log` (which proxies the
gateway's `/containerLogs`) and directly from the gateway's kubelet endpoint (with the API
server's kubelet-client certificate), in MB/s of response body (what the user receives) over
repeated fetches, and the same in MB/s of the CRI files read. Beside them, the API server
proxy's own ceiling: a static file of the body's size served by a plain HTTPS server
(bench/static_file_server.py) as the log of a pod on a node object of its own, fetched through
`pods/log` (the same kubelet leg) and directly.

`--baseline TREE` also runs the gateway of another source tree (`git archive main | tar -x -C
TREE`) beside this one, on its own devices in the same control plane; the two take turns run by
run, so before/after figures come from one run on the same (shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench import common, processes
from bench.common import say, spread
from bench.log_fetch import (
    StaticCeiling,
    body_size,
    fetch_mb_s,
    kubelet_client,
    kubelet_port,
    log_pod,
)
from bench.stuck import wait_nodes_ready
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


async def _wait_phase(api: KubeApi, path: str, phases: tuple[str, ...], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pod = await api.get(path)
        if (pod.get("status") or {}).get("phase") in phases:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{path} not in {phases}")


class _Stamped:
    """Latencies of stamped lines on one stream: lines produced after the first one arrived
    (that one shows the stream was open then; earlier lines are history, not latency)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.attached: float | None = None

    def line(self, raw: bytes) -> None:
        now = time.time()
        parts = raw.split()
        if len(parts) != 2:
            return
        stamp = float(parts[1])
        if self.attached is None:
            self.attached = now
        elif stamp >= self.attached:
            self.latencies.append(now - stamp)


async def _follow_directly(
    session: aiohttp.ClientSession, url: str, stamped: _Stamped, until: asyncio.Event
) -> None:
    """The same log followed from the gateway's kubelet port, without the API server and
    kubectl: what the gateway's own part of the latency is."""
    async with session.get(url) as response:
        response.raise_for_status()
        while not until.is_set():
            raw = await response.content.readline()
            if not raw:
                return
            stamped.line(raw)


async def follow_latency(
    cluster: LocalCluster,
    api: KubeApi,
    namespace: str,
    node: str,
    *,
    lines: int,
    tag: str,
    direct: tuple[aiohttp.ClientSession, int] | None = None,
) -> dict[str, Any]:
    name = f"stamp-{tag}"
    await api.create(
        f"/api/v1/namespaces/{namespace}/pods",
        log_pod(name, node, "counter", [str(lines), str(STAMP_INTERVAL_MS)]),
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
    via_kubectl, directly = _Stamped(), _Stamped()
    done = asyncio.Event()
    side: asyncio.Task[None] | None = None
    if direct is not None:
        session, port = direct
        url = f"https://127.0.0.1:{port}/containerLogs/{namespace}/{name}/main?follow=true"
        side = asyncio.create_task(_follow_directly(session, url, directly, done))
    try:
        async with asyncio.timeout(60 + lines * STAMP_INTERVAL_MS / 1000):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                via_kubectl.line(raw)
    finally:
        done.set()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if side is not None:
            side.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await side
    result: dict[str, Any] = dict(common.latency_summary(via_kubectl.latencies))
    if direct is not None:
        result["direct"] = common.latency_summary(directly.latencies)
    return result


@dataclasses.dataclass
class Variant:
    """One gateway under test (this tree, or a baseline tree) with its emulated devices."""

    label: str
    source: Path | None
    prefix: str
    namespace: str

    @property
    def paced(self) -> str:
        return f"{self.prefix}paced"

    @property
    def fast(self) -> str:
        # The flood's device, in an emulator process of its own (see _run).
        return f"{self.prefix}flood"


async def run(
    cluster: LocalCluster | None,
    quick: bool,
    repeats: int,
    *,
    baseline: Path | None = None,
    flood_mb: float | None = None,
) -> dict[str, Any]:
    # The emulator in this process serves `counter` with stamped lines (profiles only offer the
    # built-in app names); restored on the way out.
    original = APPS["counter"]
    APPS["counter"] = StampApp
    try:
        return await _run(cluster, quick, repeats, baseline, flood_mb)
    finally:
        APPS["counter"] = original


async def _run(  # noqa: PLR0912, PLR0915 (one benchmark scene, set up and measured in order)
    cluster: LocalCluster | None,
    quick: bool,
    repeats: int,
    baseline: Path | None,
    flood_mb: float | None,
) -> dict[str, Any]:
    lines = 60 if quick else 400
    # 16 MB of 16-byte flood lines is some 57 MB of CRI records: the 50 MiB a container's log
    # is kept at by default (5 files of 10 MiB) end up on disk, full.
    flood = int((flood_mb or (8 if quick else 16)) * 1024 * 1024)
    suffix = uuid.uuid4().hex[:4]
    variants = [Variant("current", None, f"lg{suffix}-", f"bench-logs-{suffix}")]
    if baseline is not None:
        variants.append(Variant("baseline", baseline, f"lb{suffix}-", f"bench-logb-{suffix}"))
    profiles = [DeviceProfile(device_id="paced", baud=115200)]
    latency: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    busy: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    busy_repeats = 1 if quick else 2
    fetch: dict[str, dict[str, list[float]]] = {
        v.label: {"api": [], "direct": []} for v in variants
    }
    ceiling: dict[str, list[float]] = {"api": [], "direct": []}
    body_bytes = file_bytes = 0
    body_of: dict[str, int] = {}  # per variant: bytes of the fetched body and of its CRI files
    file_of: dict[str, int] = {}
    async with common.cluster_or(cluster) as cl, contextlib.AsyncExitStack() as stack:
        api = await common.admin_api(cl)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wirelet-bench-logs-")))
        gateways = []
        static = StaticCeiling(cl, api, work, f"lg{suffix}-static", variants[0].namespace)
        try:
            for v in variants:
                config = processes.gateway_config(
                    cl, work / v.label / "gw", work / v.label / "devices", v.prefix
                )
                await stack.enter_async_context(
                    EmulatedFleet(work / v.label / "devices", profiles, control_socket=False)
                )
                # The flood's device in a process of its own: in this one, its work would
                # delay the reading of kubectl's output, which the latencies are timed by.
                flooder = await processes.start_emulator(
                    work / v.label / "devices",
                    1,
                    work / f"emulator-{v.label}.log",
                    output_buffer=1 << 20,
                    device_id="flood",
                )
                stack.push_async_callback(flooder.stop)
                gateway = processes.gateway_child(
                    config, work / f"gateway-{v.label}.log", source=v.source
                )
                gateways.append(gateway)
                await gateway.start()
            names = [n for v in variants for n in (v.paced, v.fast)]
            await wait_nodes_ready(api, names, 120)
            for v in variants:
                await common.make_namespace(api, v.namespace)
            direct = kubelet_client(cl)
            stack.push_async_callback(direct.close)
            paced_port = {v.label: await kubelet_port(api, v.paced) for v in variants}
            # Follow latency, the gateways taking turns run by run: first with nothing else
            # going on, then while a flood on another device of each gateway is being written.
            for i in range(repeats):
                for v in variants:
                    result = await follow_latency(
                        cl,
                        api,
                        v.namespace,
                        v.paced,
                        lines=lines,
                        tag=f"{i}",
                        direct=(direct, paced_port[v.label]),
                    )
                    latency[v.label].append(result)
                    say(
                        f"  [{v.label}] logs -f latency run {i}: p50 {result['p50_ms']:.1f} ms,"
                        f" p99 {result['p99_ms']:.1f} ms over {result['count']:.0f} lines"
                        f" (gateway's port directly: p50 {result['direct']['p50_ms']:.1f} ms,"
                        f" p99 {result['direct']['p99_ms']:.1f} ms)"
                    )
            for v in variants:
                await api.create(
                    f"/api/v1/namespaces/{v.namespace}/pods",
                    log_pod("flood", v.fast, "flood", [str(flood)]),
                )
            for i in range(busy_repeats):
                for v in variants:
                    result = await follow_latency(
                        cl,
                        api,
                        v.namespace,
                        v.paced,
                        lines=lines,
                        tag=f"busy{i}",
                        direct=(direct, paced_port[v.label]),
                    )
                    flood_pod = await api.get(f"/api/v1/namespaces/{v.namespace}/pods/flood")
                    phase = (flood_pod.get("status") or {}).get("phase")
                    result["flood_still_running_after"] = phase in (None, "Pending", "Running")
                    busy[v.label].append(result)
                    say(
                        f"  [{v.label}] logs -f latency during the flood, run {i}: p50"
                        f" {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms over"
                        f" {result['count']:.0f} lines (flood {phase} after it; directly: p50"
                        f" {result['direct']['p50_ms']:.1f} ms, p99"
                        f" {result['direct']['p99_ms']:.1f} ms)"
                    )
            # Whole-log fetches: through the API server, directly, and the static ceiling.
            for v in variants:
                path = f"/api/v1/namespaces/{v.namespace}/pods/flood"
                await _wait_phase(api, path, ("Succeeded", "Failed"), 600)
            via_api = api._client()
            api_headers = await api._headers("text/plain")
            urls: dict[str, dict[str, str]] = {}
            for v in variants:
                port = await kubelet_port(api, v.fast)
                urls[v.label] = {
                    "api": f"{api.base}/api/v1/namespaces/{v.namespace}/pods/flood/log",
                    "direct": f"https://127.0.0.1:{port}/containerLogs/{v.namespace}/flood/main",
                }
            for v in variants:
                body_of[v.label] = await body_size(via_api, urls[v.label]["api"], api_headers)
                file_of[v.label] = sum(
                    f.stat().st_size
                    for f in (work / v.label / "gw" / "pods").glob(
                        f"{v.namespace}_flood_*/main/*.log*"
                    )
                )
            body_bytes, file_bytes = body_of["current"], file_of["current"]
            await static.start(body_bytes)
            static_urls = {
                "api": f"{api.base}{static.log_path}",
                "direct": f"https://127.0.0.1:{static.port}/static",
            }
            for _ in range(repeats):
                for v in variants:
                    fetch[v.label]["api"].append(
                        await fetch_mb_s(via_api, urls[v.label]["api"], api_headers)
                    )
                    fetch[v.label]["direct"].append(
                        await fetch_mb_s(direct, urls[v.label]["direct"], {})
                    )
                ceiling["api"].append(await fetch_mb_s(via_api, static_urls["api"], api_headers))
                ceiling["direct"].append(await fetch_mb_s(direct, static_urls["direct"], {}))
        finally:
            await static.stop()
            for gateway in gateways:
                await gateway.stop()
            for v in variants:
                await common.delete_namespace(api, v.namespace)
                await common.delete_nodes(api, [v.paced, v.fast])
            await api.close()
    report: dict[str, Any] = {
        "benchmark": "logs",
        "machine": common.machine(),
        "quick": quick,
        "stamp_interval_ms": STAMP_INTERVAL_MS,
        "lines_per_run": lines,
        "device_baud": 115200,
        "log_body_bytes": body_bytes,
        # The CRI files the body comes from (records with their timestamp, stream and tag).
        "log_file_bytes": file_bytes,
        "flood_bytes": flood,
        "variants": {},
        "static_ceiling_mb_per_s": {k: spread(r) for k, r in ceiling.items()},
    }
    for v in variants:
        runs = latency[v.label]
        report["variants"][v.label] = {
            "source": str(v.source) if v.source else "this tree",
            "follow_latency": {
                "p50_ms": spread(r["p50_ms"] for r in runs),
                "p99_ms": spread(r["p99_ms"] for r in runs),
                # The same lines followed at the gateway's kubelet port, without the API
                # server and kubectl: the gateway's own part.
                "direct_p50_ms": spread(r["direct"]["p50_ms"] for r in runs),
                "direct_p99_ms": spread(r["direct"]["p99_ms"] for r in runs),
                "runs": runs,
            },
            # The same while the gateway writes a flood from another device (the flood may
            # end before a run does: each run says whether it was still going after it).
            "follow_latency_during_flood": {
                "p50_ms": spread(r["p50_ms"] for r in busy[v.label]),
                "p99_ms": spread(r["p99_ms"] for r in busy[v.label]),
                "runs": busy[v.label],
            },
            "fetch_mb_per_s": {k: spread(r) for k, r in fetch[v.label].items()},
            # The same fetches counted in bytes of the CRI files read (records with headers).
            "fetch_file_mb_per_s": {
                k: spread(x * file_of.get(v.label, 0) / max(body_of.get(v.label, 0), 1) for x in r)
                for k, r in fetch[v.label].items()
            },
            "log_body_bytes": body_of.get(v.label, 0),
            "log_file_bytes": file_of.get(v.label, 0),
        }
    say(
        f"log of {file_bytes / 1e6:.1f} MB on disk, {body_bytes / 1e6:.1f} MB of body"
        f" (flood of {flood / 1e6:.1f} MB of output); fetch figures in MB/s of body (what the"
        " user receives), CRI file MB/s beside"
    )
    for label, figures in report["variants"].items():
        f = figures["follow_latency"]
        b = figures["follow_latency_during_flood"]
        m = figures["fetch_mb_per_s"]
        d = figures["fetch_file_mb_per_s"]
        say(
            f"[{label}] logs -f: device line → kubectl p50 {common.fmt(f['p50_ms'], ' ms')}, "
            f"p99 {common.fmt(f['p99_ms'], ' ms')} (at the gateway's port: p50 "
            f"{common.fmt(f['direct_p50_ms'], ' ms')}, p99 {common.fmt(f['direct_p99_ms'], ' ms')})"
            f" (during a flood: p50 "
            f"{common.fmt(b['p50_ms'], ' ms')}, p99 {common.fmt(b['p99_ms'], ' ms')}); "
            "fetch through the API server "
            f"{common.fmt(m['api'], ' MB/s')} (file {d['api']['median']:.1f} MB/s), direct "
            f"{common.fmt(m['direct'], ' MB/s')} (file {d['direct']['median']:.1f} MB/s)"
        )
    c = report["static_ceiling_mb_per_s"]
    say(
        f"static file of the same size: through the API server {common.fmt(c['api'], ' MB/s')}, "
        f"direct {common.fmt(c['direct'], ' MB/s')}"
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.logs", description=__doc__)
    common.add_run_options(
        parser, quick_help="fewer lines, a smaller flood", repeats=(5, 2), what="runs of each"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a source tree (e.g. `git archive` of main) whose gateway is measured in the same "
        "run, taking turns with this one",
    )
    parser.add_argument(
        "--flood-mb", type=float, default=None, help="output of the fetched log (50; quick 8)"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(
        run(
            None,
            args.quick,
            common.repeats_of(args),
            baseline=args.baseline,
            flood_mb=args.flood_mb,
        )
    )
    common.write_result("logs", report)


if __name__ == "__main__":
    main()
