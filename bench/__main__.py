"""Run every benchmark: `python -m bench [--quick] [--only NAME ...]` (`make bench [QUICK=1]`).

The link benchmarks (codec, link_goodput) run as their own processes; the ones that need the
control plane (pods, scale, logs, recovery) share one local control plane started here. Each
writes bench/results/<name>.json; this writes bench/results/summary.md from them. Benchmarks
print figures and assert nothing about time; a benchmark that fails is reported and the others
still run (the exit status is then 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common, logs, pods, recovery, scale, ssh

LINK = ("codec", "link_goodput", "firmware_size", "qemu_goodput")
CLUSTER = ("pods", "scale", "logs", "recovery", "ssh")
ALL = LINK + CLUSTER


# Columns of the host CPU table, in the order a pod start passes through them.
_POD_CPU_ROLES = (
    ("bench client", "client"),
    ("API server", "API server"),
    ("etcd", "etcd"),
    ("scheduler", "scheduler"),
    ("controllers", "controllers"),
    ("node", "node side"),
    ("devices", "emulated devices"),
)


def _pod_cpu_section(pod: dict[str, Any]) -> list[str]:
    """Where the shared host's CPU goes per pod, per implementation (medians): over the start,
    and over the pod's whole life (start, delete, and the events written after it was gone)."""
    out: list[str] = []
    for key, title in (
        (
            "cpu_ms_per_pod_start",
            "Host CPU per pod start, ms (median over runs; create to the last pod Running)",
        ),
        (
            "cpu_ms_per_pod_lifecycle",
            "Host CPU per pod over its whole life, ms (median over runs; create to the last pod "
            "Running, delete to the last pod gone, then until no event was written for 3 s)",
        ),
    ):
        rows = _pod_cpu_rows(pod, key)
        if not rows:
            continue
        head = " | ".join(label for _, label in _POD_CPU_ROLES)
        out += [
            "",
            f"{title}, by process: the benchmark's client, the control plane, and the node "
            "implementation:",
            "",
            f"| pods / nodes | impl | {head} | total |",
            "| --- | --- | " + "--- | " * len(_POD_CPU_ROLES) + "--- |",
            *rows,
            "",
        ]
    return out


def _pod_cpu_rows(pod: dict[str, Any], key: str) -> list[str]:
    rows = []
    for e in pod["results"]:
        for impl, who in (("wirelet", "wirelet"), ("virtual_kubelet", "virtual-kubelet")):
            cpu = (e.get(impl) or {}).get(key)
            if not cpu:
                continue
            cells = [cpu[role]["median"] if role in cpu else None for role, _ in _POD_CPU_ROLES]
            total = sum(c for c in cells if c is not None)
            shown = " | ".join("—" if c is None else f"{c:.2f}" for c in cells)
            rows.append(f"| {e['pods']} / {e['nodes']} | {who} | {shown} | {total:.2f} |")
    return rows


def _scale_section(sc: dict[str, Any]) -> list[str]:
    out = ["## Scale (one gateway; several on one control plane)", ""]
    out += [
        "| gateways x devices | all Ready s | gateway CPU % of a core | RSS MB | leases on time "
        "| API requests/s | apiserver CPU % | etcd CPU % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sc["results"]:
        tree = " (baseline)" if r.get("tree") == "baseline" else ""
        if r.get("failed"):
            out.append(f"| {r.get('gateways', 1)} x {r['devices']}{tree} | {r['failed']} |")
            continue
        others = r["others_cpu_percent"]
        out.append(
            f"| {r.get('gateways', 1)} x {r['devices']}{tree} | {r['nodes_ready_s']:.1f} | "
            f"{_f(r['gateway_cpu_percent'])} | {_f(r['gateway_rss_mb'], 0)} | "
            f"{r['lease_on_time']}/{r['lease_renewals']} | "
            f"{r.get('api_requests_per_s_total', float('nan')):.1f} | "
            f"{_f(others['kube-apiserver']) if 'kube-apiserver' in others else '—'} | "
            f"{_f(others['etcd']) if 'etcd' in others else '—'} |"
        )
    t = sc["targets"]
    out += [
        "",
        f"Targets at 1000 devices: CPU < {t['cpu_percent_max']:g}% of a core, RSS < "
        f"{t['rss_mb_max']:g} MB, every lease on time; with several gateways every lease on time. "
        "Gateway CPU of several gateways: the busiest one's.",
        "",
    ]
    limit = sc.get("api_server_limit") or {}
    if limit.get("unmeasured"):
        out += [f"What a deployment hits first: not measured: {limit['unmeasured']}.", ""]
    elif limit:
        out += [
            f"What a deployment hits first ({limit['devices']} devices on one gateway): "
            f"{limit['requests_per_s_per_device']:.3f} API requests/s per device in steady state "
            f"(a kubelet: {limit['kubelet_requests_per_s_per_node']:.3f}, "
            f"{limit['kubelet_requests_per_s_per_node_with_node_get']:.3f} for kubelets that GET "
            f"their Node every 10 s); the API server spends "
            f"{limit['apiserver_cpu_ms_per_request']:.2f} ms of CPU per request, "
            f"{10 * limit['apiserver_cpu_percent_per_device'] * 100:.1f}% of a core per 1000 "
            f"devices against the gateway's "
            f"{10 * limit['gateway_cpu_percent_per_device'] * 100:.1f}%. One core carries "
            f"{limit['devices_per_apiserver_core']:.0f} devices on the API server, "
            f"{limit['devices_per_gateway_core']:.0f} on the gateway: the **"
            f"{limit['first_limit']}** is the limit first. The default budget "
            f"({limit['default_qps_per_device']:g} QPS per device, as a kubelet's client) would "
            f"ask more than one API-server core answers from "
            f"{limit['devices_where_budget_exceeds_one_apiserver_core']:.0f} devices on.",
            "",
        ]
    return out


def run_link(name: str, quick: bool) -> bool:
    argv = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if quick else [])]
    common.say(f"== {name}")
    return subprocess.run(argv, check=False).returncode == 0


async def run_cluster(names: list[str], quick: bool, with_vk: bool = True) -> dict[str, bool]:
    ok: dict[str, bool] = {}
    cluster = common.bench_cluster()
    await asyncio.to_thread(cluster.start)
    repeats = 2 if quick else None
    jobs: dict[str, Callable[[], Any]] = {
        "pods": lambda: pods.run(cluster, quick, repeats or pods.FULL_REPEATS, with_vk),
        "scale": lambda: scale.run(cluster, quick),
        "logs": lambda: logs.run(cluster, quick, repeats or 5),
        "recovery": lambda: recovery.run(cluster, quick, repeats or 5),
        "ssh": lambda: ssh.run(cluster, quick, repeats or 3),
    }
    try:
        for name in names:
            common.say(f"== {name}")
            started = time.monotonic()
            try:
                report = await jobs[name]()
                report["elapsed_s"] = time.monotonic() - started
                common.write_result(name, report)
                # A benchmark that got stuck says so in its report ("failed": what and why).
                ok[name] = not report.get("failed")
            except Exception:
                traceback.print_exc()
                ok[name] = False
    finally:
        await asyncio.to_thread(cluster.stop)
    return ok


def _load(name: str) -> dict[str, Any] | None:
    path = common.RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _f(s: dict[str, Any], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}..{s['max']:.{digits}f})"


def summary_markdown(names: list[str]) -> str:  # noqa: PLR0912, PLR0915 (one section per benchmark, read top to bottom)
    """A short markdown digest of the result files: median (min..max) over repeated runs."""
    out = ["# wirelet benchmark summary", ""]
    some = next((r for r in map(_load, names) if r and isinstance(r.get("machine"), dict)), None)
    if some:
        m = some["machine"]
        out += [
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
            f"{m['python']}, Kubernetes {m['kubernetes']}, virtual-kubelet {m['virtual_kubelet']}"
            f"{' — quick mode' if some.get('quick') else ''}.",
            "Figures: median (min..max) over repeated runs.",
            "",
        ]
    codec = _load("codec") if "codec" in names else None
    if codec:
        out += ["## Codec (one core, MB/s of task output)", ""]
        out += ["| payload | overhead | encode | decode | baseline encode | baseline decode |"]
        out += ["| --- | --- | --- | --- | --- | --- |"]
        for r in codec["results"]:
            out.append(
                f"| {r['payload_bytes']} B | {r['overhead_pct']:.1f}% | {_f(r['encode_mb_s'])} | "
                f"{_f(r['decode_mb_s'])} | {_f(r['baseline_encode_mb_s'])} | "
                f"{_f(r['baseline_decode_mb_s'])} |"
            )
        out.append("")
    goodput = _load("link_goodput") if "link_goodput" in names else None
    if goodput:
        out += ["## Link goodput (task output over a pty)", ""]
        out += ["| line | firmware | goodput kB/s | % of baud/10 | wire efficiency |"]
        out += ["| --- | --- | --- | --- | --- |"]
        for r in goodput["results"]:
            pct = r.get("percent_of_line")
            rate = {k: r[f"goodput_Bps_{k}"] / 1000 for k in ("median", "min", "max")}
            # "current": this tree's device side; "before": without task handles and
            # line-aware timers, measured in the same run as the baseline.
            out.append(
                f"| {r['case']} | {r.get('firmware', 'current')} | {_f(rate)} | "
                f"{_f(pct) if pct else '—'} | "
                f"{r['efficiency_percent']:.1f}% |"
            )
        out += [
            "",
            "Target ≥ 90% of baud/10 at 115200 (512-byte frames): "
            f"{'met' if goodput.get('target_115200_met') else 'NOT met'}; ≥ 95% for a device "
            "declaring frames of 1 KB or more: "
            f"{'met' if goodput.get('target_large_frames_met') else 'NOT met'}. The current "
            "firmware names a task's output by a one-byte task handle, the one of before by "
            "the task id as the gateway makes them (40 bytes).",
            "",
        ]
    pod = _load("pods") if "pods" in names else None
    if pod:
        out += ["## Pod lifecycle (wirelet vs virtual-kubelet mock, same control plane)", ""]
        out += [
            "| pods / nodes | impl | create→Running p50 ms | p95 ms | p99 ms | pods/s "
            "| delete→gone p50 ms | delete→gone p99 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for e in pod["results"]:
            for key, who in (("wirelet", "wirelet"), ("virtual_kubelet", "virtual-kubelet")):
                if key not in e:
                    continue
                r = e[key]
                if "failed" in r:
                    cause = r["failed"].splitlines()[0]
                    out.append(f"| {e['pods']} / {e['nodes']} | {who} | FAILED: {cause} |")
                if not r.get("runs"):
                    continue
                c = r["create_to_running"]
                out.append(
                    f"| {e['pods']} / {e['nodes']} | {who} | {_f(c['p50_ms'], 0)} | "
                    f"{_f(c['p95_ms'], 0)} | {_f(c['p99_ms'], 0)} | {_f(r['pods_per_s'])} | "
                    f"{_f(r['delete_to_gone']['p50_ms'], 0)} | "
                    f"{_f(r['delete_to_gone']['p99_ms'], 0)} |"
                )
        out.append("")
        t = pod["targets"]
        for e in pod["results"]:
            q = e.get("ratio_wirelet_over_vk")
            if q:
                out.append(
                    f"- {e['pods']} pods: wirelet / virtual-kubelet throughput "
                    f"**{q['throughput']:.2f}x** (target ≥ {t['throughput_ratio_min']}), "
                    f"p50 **{q['p50']:.2f}x** (target ≤ {t['p50_ratio_max']}), "
                    f"p99 **{q['p99']:.2f}x** (target ≤ {t.get('p99_ratio_max', '-')}), "
                    f"delete p50 {q['delete_p50']:.2f}x, "
                    f"p99 {q.get('delete_p99', float('nan')):.2f}x"
                )
        out += _pod_cpu_section(pod)
        if pod.get("note"):
            out.append(f"- {pod['note']}")
        if pod.get("baseline_missing"):
            out.append(f"- virtual-kubelet baseline missing: {pod['baseline_missing']}")
        out.append("")
    sc = _load("scale") if "scale" in names else None
    if sc:
        out += _scale_section(sc)
    lg = _load("logs") if "logs" in names else None
    if lg:
        out += ["## Logs", ""]
        for label, v in lg["variants"].items():
            f, m = v["follow_latency"], v["fetch_mb_per_s"]
            out.append(
                f"- {label}: device line → `kubectl logs -f` p50 {_f(f['p50_ms'])} ms, "
                f"p99 {_f(f['p99_ms'])} ms; `pods/log` fetch of "
                f"{lg['log_body_bytes'] / 1e6:.1f} MB through the API server "
                f"{_f(m['api'])} MB/s, from the gateway directly {_f(m['direct'])} MB/s"
            )
        c = lg["static_ceiling_mb_per_s"]
        out += [
            f"- the API server's own ceiling (a static file of the same size as a pod's log): "
            f"{_f(c['api'])} MB/s, directly {_f(c['direct'])} MB/s",
            "",
        ]
    sh = _load("ssh") if "ssh" in names else None
    if sh and sh.get("ssh") and sh.get("serial"):
        out += ["## SSH host beside a serial device (one gateway)", ""]
        out += ["| node | create→Running p50 ms | logs -f p50 ms | logs -f p99 ms |"]
        out += ["| --- | --- | --- | --- |"]
        for kind in ("serial", "ssh"):
            r = sh[kind]
            out.append(
                f"| {kind} | {r['start']['p50_ms']:.0f} | {_f(r['follow_p50_ms'])} | "
                f"{_f(r['follow_p99_ms'])} |"
            )
        out += ["", f"SSH output is polled every {sh['ssh_poll_interval_s']:g} s.", ""]
    rc = _load("recovery") if "recovery" in names else None
    if rc:
        r, s = rc["replug"], rc["restart"]
        out += [
            "## Recovery",
            "",
            f"- replug → node Ready: {_f(r['plug_to_ready_s'], 2)} s "
            f"(unplug → NotReady {_f(r['unplug_to_not_ready_s'], 2)} s)",
            f"- gateway restart, {s['devices']} devices → all nodes served again "
            f"{_f(s['start_to_all_nodes_renewed_s'], 2)} s, all tasks adopted "
            f"{_f(s['start_to_all_tasks_adopted_s'], 2)} s",
            "",
        ]
    out += _firmware_markdown(names)
    return "\n".join(out)


def _firmware_markdown(names: list[str]) -> list[str]:
    """The reference firmware on emulated boards: flash/RAM per target and link goodput."""
    out: list[str] = []
    size = _load("firmware_size") if "firmware_size" in names else None
    if size and size["targets"]:
        out += [
            "## Firmware on emulated boards (reference firmware, `hil/qemu`)",
            "",
            "Flash (.text + .data) and static RAM (.data + .bss) from the linker output, default "
            "library profile; the stack comes on top.",
            "",
            "| target | board | flash B | static RAM B | of which device library state B |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in size["targets"]:
            out.append(
                f"| {r['target']} | {r['board']} | {r['flash_bytes']} | {r['static_ram_bytes']} "
                f"| {r['library_state_bytes']} |"
            )
        out.append("")
    goodput = _load("qemu_goodput") if "qemu_goodput" in names else None
    if goodput and goodput["targets"]:
        out += [
            "Link goodput, `flood` app → board UART (QEMU pty, not paced) → gateway session:",
            "",
            "| target | goodput kB/s |",
            "| --- | --- |",
        ]
        for r in goodput["targets"]:
            rate = {k: r[f"goodput_Bps_{k}"] / 1000 for k in ("median", "min", "max")}
            out.append(f"| {r['target']} | {_f(rate)} |")
        out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI), under two minutes")
    parser.add_argument("--only", nargs="+", choices=ALL, help="run only these benchmarks")
    parser.add_argument("--no-vk", action="store_true", help="pods: skip the baseline")
    args = parser.parse_args(argv)
    names = list(args.only or ALL)
    started = time.monotonic()
    ok = {name: run_link(name, args.quick) for name in names if name in LINK}
    cluster_names = [n for n in names if n in CLUSTER]
    if cluster_names:
        ok.update(asyncio.run(run_cluster(cluster_names, args.quick, not args.no_vk)))
    summary = summary_markdown(names)
    path: Path = common.RESULTS_DIR / "summary.md"
    path.write_text(summary + "\n")
    print(summary)
    common.say(f"wrote {path}; {time.monotonic() - started:.0f}s in all")
    failed = [n for n, good in ok.items() if not good]
    if failed:
        common.say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
