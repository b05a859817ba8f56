"""A benchmark run that gets stuck is a failure with its cause: nodes that never got Ready, pods
that never ran or never went, and what the processes serving them say (which exited, their
last lines). Shared by the cluster benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import common, processes
from bench.common import Watcher
from gateway.kube.api import KubeApi


async def wait_nodes_ready(
    api: KubeApi, names: list[str], within: float, why: Callable[[], str] = lambda: ""
) -> float:
    """Seconds until every named node is Ready (watched); StuckRun naming the nodes that are
    not, with what `why` tells about the processes serving them, if that takes over `within`."""
    wanted = set(names)
    ready: set[str] = set()
    seen: set[str] = set()

    def on_event(kind: str, obj: dict[str, Any], _now: float) -> None:
        name = obj["metadata"]["name"]
        if name in wanted:
            seen.add(name)
            if kind != "DELETED" and common.node_ready(obj):
                ready.add(name)
            else:
                ready.discard(name)

    started = time.monotonic()
    watcher = Watcher(api, "/api/v1/nodes", on_event)
    await watcher.start()
    try:
        await common.wait_until("nodes Ready", lambda: ready >= wanted, within)
    except TimeoutError:
        missing = sorted(wanted - ready)
        never = [n for n in missing if n not in seen]
        raise StuckRun(
            f"{len(missing)} of {len(names)} nodes not Ready within {within:.0f}s "
            f"({len(never)} never registered): {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else "")
            + (f"\n{why()}" if why() else "")
        ) from None
    finally:
        await watcher.stop()
    return time.monotonic() - started


class StuckRun(TimeoutError):
    """A run whose nodes did not get Ready, or whose pods did not all get Running, or all go,
    within the bound; the message says which nodes or pods, and what is known of why."""


STUCK_PODS_SHOWN = 10  # the first few stuck pods in detail; the rest counted by phase


async def describe_stuck(
    api: KubeApi, namespace: str, stuck: list[str], latest: dict[str, dict[str, Any]]
) -> str:
    """Which pods are stuck and why, as far as the API tells: for each of the first few its
    node, phase, deletion mark, conditions that are not True and its last events; then how
    many of all the stuck pods are in each phase."""
    try:
        events = (await api.get(f"/api/v1/namespaces/{namespace}/events")).get("items") or []
    except Exception as exc:  # the API may be what is broken: say so and go on
        events = []
        note = f"  (events not readable: {exc})"
    else:
        note = ""
    by_pod: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_pod.setdefault((event.get("involvedObject") or {}).get("name", ""), []).append(event)
    lines: list[str] = []
    phases: dict[str, int] = {}
    for name in stuck:
        pod = latest.get(name) or {}
        status = pod.get("status") or {}
        phase = status.get("phase") or "unseen"
        phases[phase] = phases.get(phase, 0) + 1
        if len(lines) >= STUCK_PODS_SHOWN:
            continue
        node = (pod.get("spec") or {}).get("nodeName") or "unbound"
        deleting = " deleting" if (pod.get("metadata") or {}).get("deletionTimestamp") else ""
        conditions = ", ".join(
            f"{c.get('type')}={c.get('status')}"
            + (f" ({c.get('reason')}: {c.get('message', '')[:80]})" if c.get("reason") else "")
            for c in status.get("conditions") or []
            if c.get("status") != "True"
        )
        last = sorted(
            by_pod.get(name, []),
            key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
        )[-3:]
        said = "; ".join(f"{e.get('reason')}: {(e.get('message') or '')[:120]}" for e in last)
        lines.append(
            f"  {name} on {node}: {phase}{deleting}"
            + (f"; not true: {conditions}" if conditions else "")
            + (f"; events: {said}" if said else "; no events")
        )
    counts = ", ".join(f"{n} {phase}" for phase, n in sorted(phases.items()))
    return "\n".join([*lines, f"  stuck by phase: {counts}{note}"])


def process_state(*children: processes.Child) -> str:
    """Whether each child still runs, and the last lines of the log of any that exited."""
    lines = []
    for child in children:
        code = child.proc.returncode if child.proc is not None else None
        if code is None:
            lines.append(f"  {child.name}: running")
            continue
        lines.append(f"  {child.name}: exited with {code}; last lines of {child.log_path}:")
        lines += [f"    {line}" for line in common.tail_lines(child.log_path, 5)]
    return "\n".join(lines)
