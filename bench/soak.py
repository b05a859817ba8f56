"""Soak: emulated devices running counter pods under chaos, then the invariants checked.

    python -m bench.soak [--duration 600] [--devices 8] [--seed N]      (make soak DURATION=600)

N emulated devices (in this process) are served by one gateway process on the local control
plane. Each device keeps `--pods-per-device` counter pods running (`counter LINES INTERVAL_MS`,
restartPolicy Never); a finished pod has its log checked and is deleted, and a new one takes its
place. Meanwhile a chaos loop, in a seeded random order that visits every kind, unplugs and
replugs devices (under a new tty), reboots them, injects frame loss and corruption, hangs them,
and SIGKILLs the gateway and starts it again.

At the end, with every device plugged in and healthy, the invariants:
- every line of every finished pod's log exactly once and in order: a Succeeded pod has all of
  them; a pod whose task was lost to a device reboot (exit 137, reason Lost) has a gap-free
  prefix (output the device printed before it rebooted and had not yet sent is lost with it);
- no task started twice on a device (the emulator counts real starts, not idempotent retries);
- every node Ready again once its device is;
- every delete complete (no pod the soak deleted is still there);
- the gateway's RSS flat (the last incarnation's RSS within 1.5x + 30 MB of the first's).
Counts are printed; the exit code is 1 when an invariant does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common, processes
from bench.common import say
from bench.processes import Child, ProcSampler
from bench.soak_report import SoakReport, check_log, print_report
from gateway.kube.api import KubeApi, KubeApiError
from hil.cluster.local import LocalCluster
from hil.emulator.faults import FaultSettings
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile

# Link timers: quick enough that a replug or restart is served within a second or two.
SOAK_LINK = {
    "heartbeat_interval": 0.5,
    "link_lost_timeout": 3.0,
    "hello_interval": 0.05,
    "rto_initial": 0.2,
    "rto_min": 0.05,
    "rto_max": 1.0,
    "handshake_timeout": 5.0,
    "reconnect_initial_s": 0.05,
    "reconnect_max_s": 0.5,
}
CHAOS_KINDS = ("unplug", "reboot", "faults", "hang", "kill")
SETTLE_S = 120.0  # bound for the end state to settle; reached only when something is broken
GRACE_S = 2


class Soak:
    def __init__(
        self,
        cluster: LocalCluster,
        workdir: Path,
        *,
        devices: int,
        pods_per_device: int,
        lines: int,
        interval_ms: int,
        chaos_every_s: float,
        seed: int,
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.pods_per_device = pods_per_device
        self.lines = lines
        self.interval_ms = interval_ms
        self.chaos_every_s = chaos_every_s
        self.suffix = uuid.uuid4().hex[:6]
        self.namespace = f"soak-{self.suffix}"
        self.prefix = f"soak{self.suffix}"
        self.device_dir = workdir / "devices"
        self.profiles = [
            DeviceProfile(device_id=f"soak{self.suffix}-{i:02d}", task_slots=pods_per_device + 2)
            for i in range(devices)
        ]
        self.report = SoakReport(devices=devices)
        self.deleted: set[str] = set()
        self.checked: set[str] = set()
        self.nodes: dict[str, str] = {}  # device id -> node name
        self._sequence = 0
        self._samplers: list[ProcSampler] = []

    # --- the gateway process ---------------------------------------------------------------

    def _config(self) -> Path:
        return processes.gateway_config(
            self.cluster,
            self.workdir,
            self.device_dir,
            self.prefix,
            nodes={"lease_renew_interval_s": 2.0},
            link=SOAK_LINK,
        )

    async def _start_gateway(self, config: Path) -> Child:
        child = processes.gateway_child(config, self.workdir / "gateway.log")
        await child.start()
        sampler = ProcSampler(child.pid, period=1.0)
        sampler.start()
        self._samplers.append(sampler)
        self.report.gateway_starts += 1
        return child

    # --- the workload --------------------------------------------------------------------------

    def _pod_body(self, name: str, node: str) -> dict[str, Any]:
        container = {
            "name": "main",
            "image": "counter",
            "args": [str(self.lines), str(self.interval_ms)],
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"soak": self.suffix}},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "containers": [container],
                "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                "terminationGracePeriodSeconds": GRACE_S,
            },
        }

    async def _create_pod(self, api: KubeApi, device_id: str) -> None:
        self._sequence += 1
        name = f"c-{self._sequence:05d}-{device_id[-2:]}"
        await api.create(
            f"/api/v1/namespaces/{self.namespace}/pods", self._pod_body(name, self.nodes[device_id])
        )
        self.report.pods_created += 1

    async def _pods(self, api: KubeApi) -> list[dict[str, Any]]:
        listing = await api.get(f"/api/v1/namespaces/{self.namespace}/pods")
        return list(listing.get("items") or [])

    async def _logs(self, name: str) -> list[str] | None:
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={self.cluster.kubeconfig}",
            "logs",
            "-n",
            self.namespace,
            name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _err = await proc.communicate()
        if proc.returncode != 0:
            return None  # the gateway may be down this moment: check again later
        return out.decode().split()

    async def _check_finished(self, api: KubeApi, pod: dict[str, Any]) -> bool:
        """Check a finished pod's log; True once checked (then it may be deleted)."""
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        terminated = ((status.get("containerStatuses") or [{}])[0].get("state") or {}).get(
            "terminated"
        ) or {}
        lines = await self._logs(name)
        if lines is None:
            return False
        if status.get("phase") == "Succeeded":
            problem = check_log(lines, self.lines, complete=True)
            self.report.pods_succeeded += 1
        elif terminated.get("exitCode") == 137 and terminated.get("reason") == "Lost":
            problem = check_log(lines, self.lines, complete=False)
            self.report.pods_lost += 1
        else:
            self.report.pods_failed_other.append(f"{name}: {json.dumps(terminated)[:300]}")
            problem = check_log(lines, self.lines, complete=False)
        self.report.lines_checked += len(lines)
        if problem:
            self.report.log_errors.append(f"{name}: {problem}")
        return True

    async def _retire(self, api: KubeApi, pod: dict[str, Any]) -> bool:
        """Check a finished pod's log once, then delete it; True once deleted."""
        name = pod["metadata"]["name"]
        if name not in self.checked:
            if not await self._check_finished(api, pod):
                return False
            self.checked.add(name)
        with contextlib.suppress(KubeApiError):
            await api.delete(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        self.deleted.add(name)
        return True

    async def _workload(self, api: KubeApi, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                pods = await self._pods(api)
            except KubeApiError:
                await asyncio.sleep(0.5)
                continue
            live: Counter[str] = Counter()
            for pod in pods:
                name = pod["metadata"]["name"]
                node = pod["spec"].get("nodeName", "")
                phase = (pod.get("status") or {}).get("phase")
                if name in self.deleted:
                    continue
                if phase in ("Succeeded", "Failed") and await self._retire(api, pod):
                    continue
                live[node] += 1
            for device_id, node in self.nodes.items():
                for _ in range(self.pods_per_device - live[node]):
                    with contextlib.suppress(KubeApiError):
                        await self._create_pod(api, device_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    # --- chaos -----------------------------------------------------------------------------------

    async def _chaos(self, fleet: EmulatedFleet, gateway: list[Child], config: Path) -> None:
        order: list[str] = []
        while True:
            await asyncio.sleep(self.chaos_every_s * (0.5 + self.rng.random()))
            if not order:  # every kind once per round, in a random order
                order = list(CHAOS_KINDS)
                self.rng.shuffle(order)
            kind = order.pop()
            device = self.rng.choice(fleet.devices)
            self.report.chaos[kind] = self.report.chaos.get(kind, 0) + 1
            if kind == "unplug":
                device.unplug()
                await asyncio.sleep(self.rng.uniform(0.2, 3.0))
                device.plug()
            elif kind == "reboot":
                device.reboot()
            elif kind == "faults":
                device.set_faults(FaultSettings(drop=0.1, corrupt=1e-3, duplicate=0.02))
                await asyncio.sleep(self.rng.uniform(2.0, 6.0))
                device.set_faults(FaultSettings())
            elif kind == "hang":
                device.hang()
                await asyncio.sleep(self.rng.uniform(0.5, 5.0))
                device.resume()
            elif kind == "kill":
                await gateway[0].stop(signal.SIGKILL)
                await asyncio.sleep(self.rng.uniform(0.0, 2.0))
                gateway[0] = await self._start_gateway(config)

    # --- the end state ---------------------------------------------------------------------------

    async def _settle(self, api: KubeApi, fleet: EmulatedFleet) -> None:
        for device in fleet.devices:
            device.set_faults(FaultSettings())
            device.resume()
            if not device.tty:
                device.plug()
        deadline = time.monotonic() + SETTLE_S
        pending = set(self.nodes.values())
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                with contextlib.suppress(KubeApiError):
                    if common.node_ready(await api.get(f"/api/v1/nodes/{node}")):
                        pending.discard(node)
            await asyncio.sleep(0.5)
        self.report.nodes_not_ready = sorted(pending)
        # Finish the pods still running, then check and delete them.
        while time.monotonic() < deadline:
            pods = [p for p in await self._pods(api) if p["metadata"]["name"] not in self.deleted]
            if not pods:
                break
            for pod in pods:
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    await self._retire(api, pod)
            await asyncio.sleep(0.5)
        while time.monotonic() < deadline:
            remaining = {p["metadata"]["name"] for p in await self._pods(api)}
            if not remaining:
                break
            await asyncio.sleep(0.5)
        self.report.deletes_stuck = sorted(p["metadata"]["name"] for p in await self._pods(api))

    def _check_starts(self, fleet: EmulatedFleet) -> None:
        for device in fleet.devices:
            for task_id, count in device.starts.items():
                if count > 1:
                    self.report.double_starts.append(f"{device.device_id} {task_id}: {count}")

    def _check_rss(self) -> None:
        """The last incarnation's final RSS against the settled size of the earlier ones (or,
        with one incarnation, of its own first half): a process SIGKILLed while it started,
        before it reached its working size, is no baseline."""
        runs = [[s[2] / 1e6 for s in sampler.samples] for sampler in self._samplers]
        runs = [rss for rss in runs if rss]
        if not runs:
            return
        last = runs[-1]
        earlier = [max(rss) for rss in runs[:-1]] or [max(last[: max(len(last) // 2, 1)])]
        self.report.rss_first_mb = round(max(earlier), 1)
        self.report.rss_last_mb = round(last[-1], 1)
        self.report.rss_grew = self.report.rss_last_mb > 1.5 * self.report.rss_first_mb + 30

    # --- the whole run ---------------------------------------------------------------------------

    async def run(self, duration_s: float) -> SoakReport:
        self.device_dir.mkdir(parents=True, exist_ok=True)
        config = self._config()
        started = time.monotonic()
        api = await common.admin_api(self.cluster)
        async with (
            api,
            EmulatedFleet(self.device_dir, self.profiles, control_socket=False) as fleet,
        ):
            await common.make_namespace(api, self.namespace)
            gateway = [await self._start_gateway(config)]
            chaos: asyncio.Task[None] | None = None
            workload: asyncio.Task[None] | None = None
            stop = asyncio.Event()
            try:
                await self._find_nodes(api)
                workload = asyncio.create_task(self._workload(api, stop), name="soak-workload")
                chaos = asyncio.create_task(self._chaos(fleet, gateway, config), name="soak-chaos")
                await asyncio.sleep(duration_s)
                chaos.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chaos
                if gateway[0].proc is None or gateway[0].proc.returncode is not None:
                    gateway[0] = await self._start_gateway(config)
                stop.set()
                await workload
                await self._settle(api, fleet)
                self._check_starts(fleet)
                for sampler in self._samplers:
                    await sampler.stop()
                self._check_rss()
            finally:
                for task in (chaos, workload):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                for sampler in self._samplers:
                    await sampler.stop()
                await gateway[0].stop()
                await common.delete_nodes(api, self.nodes.values())
                await common.delete_namespace(api, self.namespace)
        self.report.duration_s = round(time.monotonic() - started, 1)
        return self.report

    async def _find_nodes(self, api: KubeApi) -> None:
        """Each device's node, by the device-id label (the name is the gateway's to choose)."""
        wanted = {p.device_id for p in self.profiles}
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            listing = await api.get("/api/v1/nodes")
            for node in listing.get("items") or []:
                labels = node["metadata"].get("labels") or {}
                device_id = labels.get("wirelet.io/device-id")
                if device_id in wanted and common.node_ready(node):
                    self.nodes[device_id] = node["metadata"]["name"]
            if set(self.nodes) == wanted:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"nodes never Ready for devices {sorted(wanted - set(self.nodes))}")


async def soak(
    *,
    duration_s: float,
    devices: int,
    pods_per_device: int = 2,
    lines: int = 150,
    interval_ms: int = 20,
    chaos_every_s: float = 4.0,
    seed: int | None = None,
    cluster: LocalCluster | None = None,
) -> SoakReport:
    seed = random.randrange(1 << 30) if seed is None else seed
    say(f"soak: seed {seed} (repeat with --seed {seed})")
    with tempfile.TemporaryDirectory(prefix="wirelet-soak-") as tmp:
        async with common.cluster_or(cluster) as running:
            runner = Soak(
                running,
                Path(tmp),
                devices=devices,
                pods_per_device=pods_per_device,
                lines=lines,
                interval_ms=interval_ms,
                chaos_every_s=chaos_every_s,
                seed=seed,
            )
            try:
                return await runner.run(duration_s)
            finally:
                log = Path(tmp) / "gateway.log"
                if log.exists() and not runner.report.ok:
                    keep = Path(tempfile.gettempdir()) / f"wirelet-soak-{runner.suffix}.log"
                    keep.write_bytes(log.read_bytes())
                    say(f"soak: gateway log kept in {keep}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of chaos")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--pods-per-device", type=int, default=2)
    parser.add_argument("--lines", type=int, default=150, help="lines each counter pod prints")
    parser.add_argument("--interval-ms", type=int, default=20, help="between a pod's lines")
    parser.add_argument(
        "--chaos-every", type=float, default=4.0, help="mean seconds between faults"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    report = asyncio.run(
        soak(
            duration_s=args.duration,
            devices=args.devices,
            pods_per_device=args.pods_per_device,
            lines=args.lines,
            interval_ms=args.interval_ms,
            chaos_every_s=args.chaos_every,
            seed=args.seed,
        )
    )
    print_report(report)
    common.write_result("soak", report.as_dict())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
