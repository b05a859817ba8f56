"""Recovery: a device replugged, and the gateway restarted.

    python -m bench.recovery [--quick] [--repeats N]

Emulated devices (in this process) and one gateway process, default config.

- Replug: a device's cable is pulled; once its node is NotReady it is plugged back in (a new tty
  name, as re-enumeration gives); the figure is plug → node Ready (watched). The unplug → NotReady
  time is recorded too.
- Gateway restart: every device runs a `forever` pod; the gateway is stopped (SIGTERM: device
  tasks keep running) and started again. Figures from the new process's start: until every
  node's Lease is renewed by it (the node is served and Ready again), and until every task has
  been adopted (the gateway logs "adopted running task" per task; none is started twice).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common, processes
from bench.common import Watcher, say, spread
from bench.scale import LEASES, _renew_time
from bench.stuck import wait_nodes_ready
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile

ADOPTED = "adopted running task"


async def replug_runs(
    api: KubeApi, fleet: EmulatedFleet, device_id: str, node: str, repeats: int
) -> dict[str, Any]:
    to_ready: list[float] = []
    to_not_ready: list[float] = []
    async with common.NodeReadiness(api, node) as readiness:
        for _ in range(repeats):
            await common.wait_until("node Ready", lambda: readiness.ready, 60)
            pulled = time.time()
            fleet.device(device_id).unplug()
            await common.wait_until("node NotReady", lambda: not readiness.ready, 120)
            to_not_ready.append(readiness.since - pulled)
            await asyncio.sleep(0.5)
            plugged = time.time()
            fleet.device(device_id).plug()
            await common.wait_until("node Ready again", lambda: readiness.ready, 120)
            to_ready.append(readiness.since - plugged)
            say(
                f"  replug: NotReady {to_not_ready[-1]:.2f}s after unplug, "
                f"Ready {to_ready[-1]:.2f}s after plug"
            )
    return {"plug_to_ready_s": spread(to_ready), "unplug_to_not_ready_s": spread(to_not_ready)}


async def restart_runs(
    api: KubeApi,
    gateway: processes.Child,
    nodes: list[str],
    namespace: str,
    repeats: int,
) -> dict[str, Any]:
    wanted = set(nodes)
    renewed: dict[str, list[float]] = {n: [] for n in nodes}

    def on_lease(_kind: str, obj: dict[str, Any], _now: float) -> None:
        name = obj["metadata"]["name"]
        stamp = _renew_time(obj)
        if name in wanted and stamp is not None:
            renewed[name].append(stamp)

    for i, node in enumerate(nodes):
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"keep-{i}"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "main", "image": "forever", "args": ["1000"]}],
                "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            },
        }
        await api.create(f"/api/v1/namespaces/{namespace}/pods", body)
    running: set[str] = set()

    def on_pod(_kind: str, obj: dict[str, Any], _now: float) -> None:
        if (obj.get("status") or {}).get("phase") == "Running":
            running.add(obj["metadata"]["name"])

    pods = Watcher(api, f"/api/v1/namespaces/{namespace}/pods", on_pod)
    await pods.start()
    await common.wait_until("pods Running", lambda: len(running) >= len(nodes), 120)
    await pods.stop()
    leases = Watcher(api, LEASES, on_lease)
    await leases.start()
    served: list[float] = []
    adopted: list[float] = []
    try:
        for _ in range(repeats):
            await gateway.stop()
            started = time.time()
            await gateway.start()

            def all_renewed(since: float = started) -> bool:
                return all(any(t >= since for t in renewed[n]) for n in nodes)

            await common.wait_until("leases renewed", all_renewed, 120)
            served.append(max(min(t for t in renewed[n] if t >= started) for n in nodes) - started)

            def all_adopted(since: float = started) -> bool:
                return len(gateway.count(ADOPTED, since)) >= len(nodes)

            await common.wait_until("tasks adopted", all_adopted, 120)
            adopted.append(max(gateway.count(ADOPTED, started)) - started)
            say(
                f"  restart: all {len(nodes)} nodes served {served[-1]:.2f}s, "
                f"all tasks adopted {adopted[-1]:.2f}s after the gateway started"
            )
    finally:
        await leases.stop()
    return {
        "devices": len(nodes),
        "start_to_all_nodes_renewed_s": spread(served),
        "start_to_all_tasks_adopted_s": spread(adopted),
    }


async def run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    devices = 3 if quick else 20
    suffix = uuid.uuid4().hex[:4]
    prefix = f"rc{suffix}-"
    profiles = [DeviceProfile(device_id=f"d{i:03d}", serial=f"{i:04d}") for i in range(devices)]
    nodes = [f"{prefix}d{i:03d}" for i in range(devices)]
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        namespace = f"bench-recovery-{suffix}"
        with tempfile.TemporaryDirectory(prefix="wirelet-bench-recovery-") as tmp:
            work = Path(tmp)
            config = processes.gateway_config(cl, work / "gw", work / "devices", prefix)
            gateway = processes.gateway_child(config, work / "gateway.log")
            try:
                async with EmulatedFleet(work / "devices", profiles, control_socket=False) as fleet:
                    await gateway.start()
                    await wait_nodes_ready(api, nodes, 120)
                    await common.make_namespace(api, namespace)
                    replug = await replug_runs(api, fleet, "d000", nodes[0], repeats)
                    restart = await restart_runs(api, gateway, nodes, namespace, repeats)
            finally:
                await gateway.stop()
                await common.delete_namespace(api, namespace)
                await common.delete_nodes(api, nodes)
                await api.close()
    say(
        f"recovery: replug → Ready {common.fmt(replug['plug_to_ready_s'], ' s', 2)}; "
        f"gateway restart ({devices} devices) → all nodes served "
        f"{common.fmt(restart['start_to_all_nodes_renewed_s'], ' s', 2)}, all tasks adopted "
        f"{common.fmt(restart['start_to_all_tasks_adopted_s'], ' s', 2)}"
    )
    return {
        "benchmark": "recovery",
        "machine": common.machine(),
        "quick": quick,
        "replug": replug,
        "restart": restart,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    common.add_run_options(parser, quick_help="3 devices", repeats=(5, 2), what="runs")
    args = parser.parse_args(argv)
    common.write_result("recovery", asyncio.run(run(None, args.quick, common.repeats_of(args))))


if __name__ == "__main__":
    main()
