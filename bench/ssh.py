"""SSH hosts beside serial devices: pod start latency and `kubectl logs -f` latency.

    python -m bench.ssh [--quick] [--repeats N]

One gateway (`python -m gateway.cli run`, shipped defaults, so the SSH poll interval is 0.2 s)
serves an emulated serial device (115200 baud, in this process) and an SSH host: a real sshd on
a loopback port (hil/sshd.py), so the "host" is this machine. Both run the same kinds of pods:

- start: create → phase Running (polled every 20 ms), sequentially, for `sleep` on the host and
  the `forever` app on the device;
- logs: each line carries the wall time it was produced (the device's `counter` prints it, the
  host's shell loop prints `date +%s.%N`); `kubectl logs -f` reads them through the API server
  and the kubelet API, and a line's latency is its arrival time minus its stamp (same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common, processes
from bench.common import say, spread
from bench.logs import STAMP_INTERVAL_MS, StampApp
from bench.stuck import wait_nodes_ready
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster
from hil.emulator.apps import APPS
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from hil.sshd import Sshd

TOLERATE = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]


def _pod(name: str, node: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", **container}],
            "tolerations": TOLERATE,
        },
    }


def _long_running(ssh: bool) -> dict[str, Any]:
    if ssh:
        return {"image": "host", "command": ["sleep", "600"]}
    return {"image": "forever", "args": ["5000"]}


def _stamped(ssh: bool, lines: int) -> dict[str, Any]:
    if ssh:
        pause = STAMP_INTERVAL_MS / 1000
        loop = (
            f'i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo "$i $(date +%s.%N)"; '
            f"sleep {pause}; done"
        )
        return {"image": "host", "command": ["sh", "-c", loop]}
    return {"image": "counter", "args": [str(lines), str(STAMP_INTERVAL_MS)]}


async def _phase(api: KubeApi, path: str, phases: tuple[str, ...], within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        pod = await api.get(path)
        if (pod.get("status") or {}).get("phase") in phases:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{path} not in {phases} within {within} s")


async def start_latency(
    api: KubeApi, namespace: str, node: str, *, ssh: bool, count: int, tag: str
) -> list[float]:
    seconds = []
    for i in range(count):
        name = f"start-{tag}-{i}"
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        started = time.monotonic()
        await api.create(
            f"/api/v1/namespaces/{namespace}/pods", _pod(name, node, _long_running(ssh))
        )
        await _phase(api, path, ("Running",), 60)
        seconds.append(time.monotonic() - started)
        await api.delete(path)
    return seconds


async def follow_latency(
    cluster: LocalCluster,
    api: KubeApi,
    namespace: str,
    node: str,
    *,
    ssh: bool,
    lines: int,
    tag: str,
) -> dict[str, Any]:
    name = f"stamp-{tag}"
    await api.create(f"/api/v1/namespaces/{namespace}/pods", _pod(name, node, _stamped(ssh, lines)))
    await _phase(api, f"/api/v1/namespaces/{namespace}/pods/{name}", ("Running", "Succeeded"), 60)
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
            while raw := await proc.stdout.readline():
                now = time.time()
                parts = raw.split()
                if len(parts) != 2:
                    continue
                stamp = float(parts[1])
                if attached is None and now - stamp < 1.0:  # older lines are history
                    attached = stamp
                if attached is not None and stamp >= attached:
                    latencies.append(now - stamp)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    return common.latency_summary(latencies)


def ssh_section(sshd: Sshd, host_id: str) -> str:
    host = sshd.host_settings(id=host_id)
    lines = ["", "[[ssh.hosts]]", *(f"{k} = {json.dumps(v)}" for k, v in host.items())]
    return "\n".join(lines) + "\n"


async def run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    original = APPS["counter"]
    APPS["counter"] = StampApp  # the device's counter lines carry their wall time
    try:
        return await _run(cluster, quick, repeats)
    finally:
        APPS["counter"] = original


async def _run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    starts = 5 if quick else 20
    lines = 40 if quick else 200
    suffix = uuid.uuid4().hex[:4]
    prefix = f"sb{suffix}-"
    serial, host = f"{prefix}serial", f"{prefix}host"
    results: dict[str, dict[str, Any]] = {}
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        namespace = f"bench-ssh-{suffix}"
        with tempfile.TemporaryDirectory(prefix="wirelet-bench-ssh-") as tmp:
            work = Path(tmp)
            sshd = Sshd(work / "sshd")
            sshd.start()
            config = processes.gateway_config(cl, work / "gw", work / "devices", prefix)
            with config.open("a", encoding="utf-8") as toml:
                toml.write(ssh_section(sshd, "host"))
            gateway = processes.gateway_child(config, work / "gateway.log")
            profiles = [DeviceProfile(device_id="serial", baud=115200, task_slots=64)]
            try:
                async with EmulatedFleet(work / "devices", profiles, control_socket=False):
                    await gateway.start()
                    await wait_nodes_ready(api, [serial, host], 120)
                    await common.make_namespace(api, namespace)
                    for kind, node in (("serial", serial), ("ssh", host)):
                        ssh = kind == "ssh"
                        start = await start_latency(
                            api, namespace, node, ssh=ssh, count=starts, tag=kind
                        )
                        follows = [
                            await follow_latency(
                                cl, api, namespace, node, ssh=ssh, lines=lines, tag=f"{kind}{i}"
                            )
                            for i in range(repeats)
                        ]
                        results[kind] = {
                            "start": common.latency_summary(start),
                            "follow_p50_ms": spread(f["p50_ms"] for f in follows),
                            "follow_p99_ms": spread(f["p99_ms"] for f in follows),
                            "follow_runs": follows,
                        }
                        say(
                            f"  {kind}: create→Running p50 "
                            f"{results[kind]['start']['p50_ms']:.0f} ms; logs -f p50 "
                            f"{common.fmt(results[kind]['follow_p50_ms'], ' ms')}, p99 "
                            f"{common.fmt(results[kind]['follow_p99_ms'], ' ms')}"
                        )
            finally:
                await gateway.stop()
                sshd.stop()
                await common.delete_namespace(api, namespace)
                await common.delete_nodes(api, [serial, host])
                await api.close()
    return {
        "benchmark": "ssh",
        "machine": common.machine(),
        "quick": quick,
        "pods_started_each": starts,
        "stamp_interval_ms": STAMP_INTERVAL_MS,
        "lines_per_run": lines,
        "ssh_poll_interval_s": 0.2,
        "serial": results.get("serial"),
        "ssh": results.get("ssh"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ssh", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer pods and lines")
    parser.add_argument("--repeats", type=int, default=None, help="follow runs (3; quick 2)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    common.write_result("ssh", asyncio.run(run(None, args.quick, repeats)))


if __name__ == "__main__":
    main()
