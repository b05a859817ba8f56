"""What a benchmark run cost: the API server's writes per pod (by resource, subresource and verb)
and its mean time per write, from its own /metrics, and the CPU of the processes under test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from bench import processes
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster

# CPU seconds so far of the processes under test, by role ("node": the gateway or every
# virtual-kubelet, "devices": the emulator), and of the control plane's (control_plane_cpu).
CpuReader = Callable[[], dict[str, float]]
Snapshot = tuple[dict[str, float], dict[str, float]]  # API writes, CPU seconds


async def snapshot(api: KubeApi, cpu: CpuReader) -> Snapshot:
    return await api_writes(api), cpu()


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += processes.ProcSampler(pid).read()[1]
    return total


# The control plane's processes, by the name each gets in the figures. On the shared host their
# CPU per pod is what the node implementations' own CPU competes with.
CONTROL_PLANE = {
    "kube-apiserver": "API server",
    "etcd": "etcd",
    "kube-scheduler": "scheduler",
    "kube-controller-manager": "controllers",
}


def control_plane_cpu(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds so far of each control-plane process, and of this benchmark (its client)."""
    pids = cluster.pids
    figures = {label: cpu_seconds([pids[name]]) for name, label in CONTROL_PLANE.items()}
    figures["bench client"] = time.process_time()
    return figures


# The API server's own count of requests, by resource, subresource and verb: what a run's pods
# cost it (status writes and events per pod, the node implementation's share beside the rest).
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


_COUNTERS = {
    "apiserver_request_total{": "",
    # The API server's time per request (to its answer), as a sum and a count: their growth
    # over a span is the mean latency of that kind of write in the span.
    "apiserver_request_duration_seconds_sum{": "|sum",
    "apiserver_request_duration_seconds_count{": "|count",
}


async def api_writes(api: KubeApi) -> dict[str, float]:
    """`resource[/subresource] VERB` -> requests so far, for writes to pods and events (and
    `... VERB|sum`, `|count`: seconds the API server took on them, how many it timed)."""
    text = await api.get_text("/metrics")
    counts: dict[str, float] = {}
    for line in text.splitlines():
        prefix = next((p for p in _COUNTERS if line.startswith(p)), None)
        if prefix is None:
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(
            part.split("=", 1) for part in labels_text[len(prefix) : -1].split(",") if "=" in part
        )
        resource = labels.get("resource", "").strip('"')
        verb = labels.get("verb", "").strip('"')
        if resource not in ("pods", "events") or verb not in WRITE_VERBS:
            continue
        sub = labels.get("subresource", "").strip('"')
        key = f"{resource}{'/' + sub if sub else ''} {verb}{_COUNTERS[prefix]}"
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def write_latency_ms(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean API server time per request of each kind of write made between the two readings."""
    out = {}
    for key in sorted(k for k in after if k.endswith("|count")):
        count = after[key] - before.get(key, 0.0)
        if count > 0:
            total = after[key[: -len("|count")] + "|sum"] - before.get(
                key[: -len("|count")] + "|sum", 0.0
            )
            out[key[: -len("|count")]] = round(1000 * total / count, 1)
    return out


def writes_per_pod(
    before: dict[str, float], after: dict[str, float], count: float
) -> dict[str, float]:
    """What each counter grew by, per pod (counters that did not grow are left out)."""
    return {
        key: round((after[key] - before.get(key, 0.0)) / count, 2)
        for key in sorted(after)
        if after[key] > before.get(key, 0.0) and "|" not in key
    }


EVENTS_QUIET_S = 3.0  # no event written for this long: the node side has written its events
EVENTS_WAIT_S = 600.0


async def events_settled(api: KubeApi, namespace: str) -> float:
    """Seconds until the namespace's events have stopped changing (none created or counted up
    for EVENTS_QUIET_S), from a watch (cheap for the API server, unlike polling its /metrics);
    gives up, returning what it waited, after EVENTS_WAIT_S."""
    path = f"/api/v1/namespaces/{namespace}/events"
    started = time.monotonic()
    last_change = started
    version = (await api.get(path, limit=1))["metadata"]["resourceVersion"]

    async def follow() -> None:
        nonlocal last_change, version
        while True:
            async for event in api.watch(path, version):
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    last_change = time.monotonic()

    watching = asyncio.create_task(follow(), name="bench-events-settled")
    try:
        while time.monotonic() - started < EVENTS_WAIT_S:
            if watching.done():
                watching.result()  # a failed watch: say so rather than call the events settled
            if time.monotonic() - last_change >= EVENTS_QUIET_S:
                return last_change - started
            await asyncio.sleep(0.25)
        return time.monotonic() - started
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
