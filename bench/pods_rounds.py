"""How bench.pods runs and merges its measurements: rounds of every implementation in
alternating order (an optional warm-up round first, not counted), a stuck run reported as a
failure with its cause, and the runs of each implementation merged into medians and spreads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from bench.common import say, spread
from bench.pods_report import ratios
from bench.stuck import StuckRun
from gateway.kube.api import KubeApiError


@dataclasses.dataclass(frozen=True)
class Size:
    pods: int
    nodes: int


# The latency summaries each round reports (bench.pods), summarized over rounds.
LATENCY_KEYS = (
    "create_to_running",
    "create_to_bound",
    "bound_to_running",
    "bound_to_reported",
    "delete_to_gone",
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for key in LATENCY_KEYS:
        out[key] = {p: spread(r[key][p] for r in runs) for p in ("p50_ms", "p95_ms", "p99_ms")}
    out["pods_per_s"] = spread(r["pods_per_s"] for r in runs)
    out["delete_pods_per_s"] = spread(r["delete_pods_per_s"] for r in runs)
    out["events_settled_s"] = spread(r.get("events_settled_s", 0.0) for r in runs)
    # CPU ms per pod start by process (a process that used none in a run counts 0 there).
    roles = {role for r in runs for role in r.get("cpu_ms_per_pod_start", {})}
    out["cpu_ms_per_pod_start"] = {
        role: spread(r["cpu_ms_per_pod_start"].get(role, 0.0) for r in runs)
        for role in sorted(roles)
    }
    # The same over a pod's whole life: its start, its delete, and the events written after.
    spans = ("cpu_ms_per_pod_start", "cpu_ms_per_pod_delete", "cpu_ms_per_pod_events")
    out["cpu_ms_per_pod_lifecycle"] = {
        role: spread(sum(r.get(span, {}).get(role, 0.0) for span in spans) for r in runs)
        for role in sorted(roles)
    }
    return out


Measure = Callable[[int], Coroutine[Any, Any, dict[str, Any]]]


async def in_rounds(
    measures: dict[str, Measure], size: Size, repeats: int, *, warmup: bool = False
) -> dict[str, Any]:
    """`repeats` rounds of every measure (keys of WHO) once, each round in the opposite order
    to the one before; with `warmup`, a round before them that is not counted (in the opposite
    order to round one's). One that fails is left out of
    the later rounds; the figures of its rounds that completed are kept (a virtual-kubelet that
    crashes in round 3 must not lose rounds 1 and 2) with the failure beside them, and the run
    counts as failed."""
    rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in measures}
    failed: dict[str, str] = {}
    first = -1 if warmup else 0
    for i in range(first, repeats):
        order = list(measures) if i % 2 == 0 else list(reversed(measures))
        if i < 0:
            say(f"  warm-up round at {size.pods}x{size.nodes} (not counted)")
        for key in order:
            if key in failed:
                continue
            got = await unless_stuck(WHO[key], size, measures[key](i))
            if "failed" in got:
                where = "warm-up round" if i < 0 else f"round {i + 1}"
                failed[key] = f"{where}: {got['failed']}"
            elif i >= 0:
                rounds[key].append(got)
    entry: dict[str, Any] = {"pods": size.pods, "nodes": size.nodes, "order": "interleaved"}
    for key, done in rounds.items():
        entry[key] = merge_rounds(done) if done else {}
        if key in failed:
            entry[key]["failed"] = failed[key]
    vk = entry.get("virtual_kubelet", {"failed": "not run"})
    for key, ratio in (
        ("wirelet", "ratio_wirelet_over_vk"),
        ("wirelet_baseline", "ratio_baseline_over_vk"),
    ):
        if entry.get(key, {}).get("runs") and vk.get("runs"):
            entry[ratio] = ratios(entry[key], vk)
    return entry


WHO = {
    "wirelet_baseline": "wirelet (baseline)",
    "wirelet": "wirelet",
    "virtual_kubelet": "virtual-kubelet",
}


def merge_rounds(got: list[dict[str, Any]]) -> dict[str, Any]:
    """One implementation's rounds as one result: figures over all its runs; start-up and
    memory figures of each round listed."""
    runs = [run for one in got for run in one["runs"]]
    merged = summarize(runs)
    for key in ("nodes_ready_s", "gateway_rss_mb", "processes_rss_mb"):
        if key in got[0]:
            merged[key] = spread(one[key] for one in got)
    return merged


async def unless_stuck(
    who: str, size: Size, measuring: Coroutine[Any, Any, dict[str, Any]]
) -> dict[str, Any]:
    """The implementation's figures, or {"failed": cause} when a run got stuck: the other
    implementation and the other sizes still run, and the benchmark ends as a failure."""
    try:
        return await measuring
    except StuckRun as exc:
        cause = str(exc)
    except (TimeoutError, RuntimeError, OSError, KubeApiError) as exc:
        # Anything else that stops a run (the API refusing, a process that cannot start):
        # the same failure, with its cause, rather than a traceback that loses the other runs.
        cause = f"{type(exc).__name__}: {exc}"
    say(f"  {who} FAILED at {size.pods} pods / {size.nodes} nodes: {cause}")
    return {"failed": cause}
