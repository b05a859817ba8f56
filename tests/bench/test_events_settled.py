"""bench.pods waits for the node side's events to be written before it deletes the namespace
(events written late would be refused unwritten and their cost left out), and counts them."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bench import common, run_costs
from bench.pods_rounds import LATENCY_KEYS, summarize
from hil.cluster.local import LocalCluster

pytestmark = pytest.mark.integration


def _event(namespace: str, index: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"late-{index}", "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": "p0000", "namespace": namespace},
        "reason": "Started",
        "message": "a late event",
        "type": "Normal",
    }


async def test_the_wait_lasts_until_events_stop_coming(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_costs, "EVENTS_QUIET_S", 1.0)
    api = await common.admin_api(cluster)
    namespace = f"bench-events-{uuid.uuid4().hex[:6]}"
    await common.make_namespace(api, namespace)

    async def write_late() -> None:
        for i in range(5):  # one every 0.4 s: never quiet for 1 s until the last
            await asyncio.sleep(0.4)
            await api.create(f"/api/v1/namespaces/{namespace}/events", _event(namespace, i))

    try:
        writer = asyncio.create_task(write_late())
        settled = await run_costs.events_settled(api, namespace)
        assert writer.done()
        assert 1.6 <= settled < 4.0  # the last event came after ~2 s; not a quiet second before
        # Nothing more to come: settled at once (the quiet second, counted from the start).
        assert await run_costs.events_settled(api, namespace) < 0.5
    finally:
        await common.delete_namespace(api, namespace)
        await api.close()


def test_the_whole_life_cpu_adds_start_delete_and_events() -> None:
    summary = {"p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0}
    run = dict.fromkeys(LATENCY_KEYS, summary)
    runs = [
        {
            **run,
            "pods_per_s": 1.0,
            "delete_pods_per_s": 1.0,
            "events_settled_s": 2.0,
            "cpu_ms_per_pod_start": {"node": 1.0, "API server": 4.0},
            "cpu_ms_per_pod_delete": {"node": 0.5},
            "cpu_ms_per_pod_events": {"node": 0.25, "API server": 2.0},
        }
    ]
    out = summarize(runs)
    assert out["cpu_ms_per_pod_lifecycle"]["node"]["median"] == 1.75
    assert out["cpu_ms_per_pod_lifecycle"]["API server"]["median"] == 6.0
    assert out["events_settled_s"]["median"] == 2.0
