"""The control plane's own part in a scale window: the API server's request counters, the idle
control plane (its own request rates and CPU, measured before any gateway starts, after waiting
until it is done with earlier work), and the wait until the controllers are done with new nodes.

Kept apart from the runs (bench.scale): it measures what is not the gateways', which a run takes
off its own window.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.common import say
from bench.processes import ProcSampler
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster

IDLE_WINDOW_S = 15.0  # the control plane on its own, before any gateway
# Before the idle window: the control plane must be done with what ran before (the pods
# benchmark's namespaces take minutes of API server and etcd work to delete after it ends; one
# full run measured the API server "idle" at 59% of a core there). Quiet: no namespace
# terminating and the API server below QUIET_APISERVER_PERCENT in QUIET_SLICES slices in a row.
QUIET_SLICE_S = 5.0
QUIET_SLICES = 2
QUIET_APISERVER_PERCENT = 15.0
QUIET_WITHIN_S = 300.0
# New nodes keep the controller manager busy after they are Ready (it GETs and PATCHes each to
# lift the not-ready taint and posts an event; at its own QPS that takes ~25 s per 100 nodes):
# the steady window starts once that traffic is done.
CONTROLLER_NODE_TRAFFIC = ("GET nodes", "PATCH nodes", "POST events")
SETTLE_POLL_S = 5.0
SETTLE_QUIET_POLLS = 2


async def request_counts(api: KubeApi) -> Counter[str]:
    """`apiserver_request_total` summed by verb and resource: "PATCH leases", ..."""
    counts: Counter[str] = Counter()
    for line in (await api.get_text("/metrics")).splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(
            part.split("=", 1)
            for part in labels_text[len("apiserver_request_total{") : -1].split(",")
        )
        resource = labels.get("resource", '""').strip('"')
        sub = labels.get("subresource", '""').strip('"')
        key = f"{labels.get('verb', '').strip(chr(34))} {resource}{'/' + sub if sub else ''}"
        counts[key] += int(float(value))
    return counts


def rates(before: Counter[str], after: Counter[str], seconds: float) -> dict[str, float]:
    return {k: (after[k] - before[k]) / seconds for k in after if after[k] > before[k]}


@dataclass
class Idle:
    """The control plane without gateways: its own request rate and CPU."""

    request_rates: dict[str, float] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)  # what quiet_control_plane waited for

    def less(self, window: dict[str, float]) -> dict[str, float]:
        """A window's request rates less the idle ones: what the gateways sent."""
        above = {k: v - self.request_rates.get(k, 0.0) for k, v in window.items()}
        return {k: v for k, v in above.items() if v > 0.05}


async def terminating_namespaces(api: KubeApi) -> list[str]:
    listing = await api.get("/api/v1/namespaces")
    return [
        str(ns["metadata"]["name"])
        for ns in listing.get("items") or []
        if (ns.get("status") or {}).get("phase") == "Terminating"
    ]


def is_quiet(apiserver_slices: list[float], terminating: list[str]) -> bool:
    """The last QUIET_SLICES slices under the threshold, no namespace being deleted."""
    last = apiserver_slices[-QUIET_SLICES:]
    return (
        not terminating
        and len(last) == QUIET_SLICES
        and all(p < QUIET_APISERVER_PERCENT for p in last)
    )


async def quiet_control_plane(cluster: LocalCluster, api: KubeApi) -> dict[str, Any]:
    """Wait (bounded) until the control plane is done with earlier work; what was waited for."""
    sampler = ProcSampler(cluster.pids["kube-apiserver"], period=QUIET_SLICE_S)
    started = time.monotonic()
    sampler.start()
    terminating: list[str] = []
    slices: list[float] = []
    try:
        while time.monotonic() - started < QUIET_WITHIN_S:
            await asyncio.sleep(QUIET_SLICE_S)
            terminating = await terminating_namespaces(api)
            slices = sampler.cpu_percent_slices(QUIET_SLICE_S)
            if is_quiet(slices, terminating):
                break
    finally:
        await sampler.stop()
    waited = {
        "waited_s": round(time.monotonic() - started, 1),
        "quiet": is_quiet(slices, terminating),
        "apiserver_cpu_percent_last": [round(p, 1) for p in slices[-QUIET_SLICES:]],
        "terminating_namespaces": len(terminating),
    }
    say(
        f"  control plane {'quiet' if waited['quiet'] else 'still busy'} after "
        f"{waited['waited_s']:.0f} s (API server {waited['apiserver_cpu_percent_last']}% "
        f"of a core, {len(terminating)} namespaces terminating)"
    )
    return waited


async def measure_idle(cluster: LocalCluster, api: KubeApi) -> Idle:
    waited = await quiet_control_plane(cluster, api)
    samplers = control_plane_samplers(cluster)
    for sampler in samplers.values():
        sampler.start()
    before, started = await request_counts(api), time.monotonic()
    await asyncio.sleep(IDLE_WINDOW_S)
    after = await request_counts(api)
    elapsed = time.monotonic() - started
    for sampler in samplers.values():
        await sampler.stop()
    idle = Idle(
        rates(before, after, elapsed),
        {k: s.cpu_percent_total() for k, s in samplers.items()},
        waited,
    )
    say(
        f"  idle control plane: {sum(idle.request_rates.values()):.1f} requests/s; "
        + ", ".join(f"{k} {v:.1f}%" for k, v in idle.cpu_percent.items())
    )
    return idle


async def settle(api: KubeApi, idle: Idle, nodes: int) -> tuple[float, bool]:
    """Wait until the controllers are done with the new nodes (their node requests and events
    below a trickle); the seconds waited and whether they were done within the bound."""
    started = time.monotonic()
    bound = 60.0 + 0.4 * nodes
    trickle = max(0.5, 0.002 * nodes)
    before = await request_counts(api)
    quiet = 0  # polls in a row below the trickle: one alone can fall in a lull of a burst
    while time.monotonic() - started < bound:
        await asyncio.sleep(SETTLE_POLL_S)
        after = await request_counts(api)
        busy = idle.less(rates(before, after, SETTLE_POLL_S))
        quiet = quiet + 1 if sum(busy.get(k, 0.0) for k in CONTROLLER_NODE_TRAFFIC) < trickle else 0
        if quiet >= SETTLE_QUIET_POLLS:
            return time.monotonic() - started, True
        before = after
    return time.monotonic() - started, False


def control_plane_samplers(cluster: LocalCluster) -> dict[str, ProcSampler]:
    return {
        component: ProcSampler(pid)
        for component, pid in cluster.pids.items()
        if component in ("kube-apiserver", "etcd")
    }
