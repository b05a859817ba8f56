"""What bench.pods prints: each run's figures as it ends, and per size the medians of every
implementation and their ratios against the issue-16 targets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench import common
from bench.common import say

if TYPE_CHECKING:
    from bench.pods_rounds import Size

TARGETS = {"throughput_ratio_min": 1.2, "p50_ratio_max": 1.0, "p99_ratio_max": 1.0}


def print_run(who: str, size: Size, run: dict[str, Any]) -> None:
    c, d = run["create_to_running"], run["delete_to_gone"]
    say(
        f"  {who:>15} {size.pods:5d} pods / {size.nodes:3d} nodes: "
        f"create→Running p50 {c['p50_ms']:7.0f} p95 {c['p95_ms']:7.0f} p99 {c['p99_ms']:7.0f} ms, "
        f"{run['pods_per_s']:6.1f} pods/s; delete→gone p50 {d['p50_ms']:7.0f} "
        f"p99 {d['p99_ms']:7.0f} ms; "
        f"create→bound p50 {run['create_to_bound']['p50_ms']:.0f} ms, "
        f"bound→first status p50 {run['bound_to_reported']['p50_ms']:.0f} ms, "
        f"bound→Running p50 {run['bound_to_running']['p50_ms']:.0f} "
        f"p99 {run['bound_to_running']['p99_ms']:.0f} ms\n"
        f"    API writes per pod, start: {_writes(run['api_writes_per_pod_start'])}; "
        f"delete: {_writes(run['api_writes_per_pod_delete'])}\n"
        f"    API server ms per write, start: {_writes(run['api_write_ms_start'])}; "
        f"delete: {_writes(run['api_write_ms_delete'])}\n"
        f"    CPU ms per pod, start: {_writes(run['cpu_ms_per_pod_start'])}; "
        f"delete: {_writes(run['cpu_ms_per_pod_delete'])}"
    )
    if "events_settled_s" in run:
        say(
            f"    after the last pod was gone, events were written for "
            f"{run['events_settled_s']:.1f} s more: API writes per pod "
            f"{_writes(run['api_writes_per_pod_events'])}; CPU ms per pod "
            f"{_writes(run['cpu_ms_per_pod_events'])}"
        )


def _writes(per_pod: dict[str, float]) -> str:
    return ", ".join(f"{key} {n:g}" for key, n in per_pod.items()) or "none"


def ratios(w: dict[str, Any], v: dict[str, Any]) -> dict[str, float]:
    return {
        "throughput": w["pods_per_s"]["median"] / v["pods_per_s"]["median"],
        "p50": w["create_to_running"]["p50_ms"]["median"]
        / v["create_to_running"]["p50_ms"]["median"],
        "p99": w["create_to_running"]["p99_ms"]["median"]
        / v["create_to_running"]["p99_ms"]["median"],
        "delete_p50": w["delete_to_gone"]["p50_ms"]["median"]
        / v["delete_to_gone"]["p50_ms"]["median"],
        "delete_p99": w["delete_to_gone"]["p99_ms"]["median"]
        / v["delete_to_gone"]["p99_ms"]["median"],
    }


def print_entry(entry: dict[str, Any]) -> None:
    say(f"pods {entry['pods']} over {entry['nodes']} nodes (median (min..max) over repeats):")
    for key, who in (
        ("wirelet_baseline", "wirelet (baseline)"),
        ("wirelet", "wirelet"),
        ("virtual_kubelet", "virtual-kubelet"),
    ):
        if key not in entry:
            continue
        r = entry[key]
        if "failed" in r:
            say(f"  {who:>15}: FAILED, {r['failed'].splitlines()[0]}")
        if not r.get("runs"):
            continue
        c = r["create_to_running"]
        say(
            f"  {who:>15}: {len(r['runs'])} runs, create→Running p50 "
            f"{common.fmt(c['p50_ms'], ' ms', 0)}, "
            f"p95 {common.fmt(c['p95_ms'], ' ms', 0)}, p99 {common.fmt(c['p99_ms'], ' ms', 0)}; "
            f"{common.fmt(r['pods_per_s'], ' pods/s')}; delete→gone p50 "
            f"{common.fmt(r['delete_to_gone']['p50_ms'], ' ms', 0)}, "
            f"p99 {common.fmt(r['delete_to_gone']['p99_ms'], ' ms', 0)}"
        )
    for key, who in (("ratio_baseline_over_vk", "baseline"), ("ratio_wirelet_over_vk", "wirelet")):
        if key not in entry:
            continue
        q = entry[key]
        t = TARGETS
        say(
            f"  {who} / virtual-kubelet: throughput {q['throughput']:.2f}x "
            f"(target >= {t['throughput_ratio_min']}), p50 {q['p50']:.2f}x "
            f"(target <= {t['p50_ratio_max']}), p99 {q['p99']:.2f}x "
            f"(target <= {t['p99_ratio_max']}); delete p50 {q['delete_p50']:.2f}x, "
            f"p99 {q['delete_p99']:.2f}x"
        )
