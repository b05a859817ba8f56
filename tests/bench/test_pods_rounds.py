"""bench.pods measures the implementations in alternating rounds, not one after the other."""

from __future__ import annotations

from typing import Any

import pytest

from bench import pods
from bench.pods_rounds import Measure, Size, in_rounds
from bench.run_costs import write_latency_ms
from bench.stuck import StuckRun


def _run(p50_ms: float) -> dict[str, Any]:
    summary = {"p50_ms": p50_ms, "p95_ms": p50_ms, "p99_ms": p50_ms}
    return {
        "create_to_running": summary,
        "create_to_bound": summary,
        "bound_to_running": summary,
        "bound_to_reported": summary,
        "delete_to_gone": summary,
        "pods_per_s": 1000 / p50_ms,
        "delete_pods_per_s": 1000 / p50_ms,
    }


async def test_rounds_alternate_their_order_and_merge_every_run() -> None:
    calls: list[tuple[str, int]] = []

    def measure(key: str, p50_ms: float) -> Measure:
        async def one(i: int) -> dict[str, Any]:
            calls.append((key, i))
            return {"nodes_ready_s": 1.0, "runs": [_run(p50_ms + i)]}

        return one

    measures = {
        "wirelet_baseline": measure("wirelet_baseline", 300),
        "wirelet": measure("wirelet", 100),
        "virtual_kubelet": measure("virtual_kubelet", 200),
    }
    entry = await in_rounds(measures, Size(10, 2), 3)
    assert calls == [
        ("wirelet_baseline", 0),
        ("wirelet", 0),
        ("virtual_kubelet", 0),
        ("virtual_kubelet", 1),
        ("wirelet", 1),
        ("wirelet_baseline", 1),
        ("wirelet_baseline", 2),
        ("wirelet", 2),
        ("virtual_kubelet", 2),
    ]
    assert len(entry["wirelet"]["runs"]) == 3
    assert entry["wirelet"]["create_to_running"]["p50_ms"]["median"] == 101
    assert entry["ratio_wirelet_over_vk"]["p50"] == 101 / 201
    assert entry["ratio_baseline_over_vk"]["p50"] == 301 / 201


async def test_a_warm_up_round_runs_first_and_is_not_counted() -> None:
    calls: list[tuple[str, int]] = []

    def measure(key: str, p50_ms: float) -> Measure:
        async def one(i: int) -> dict[str, Any]:
            calls.append((key, i))
            return {"runs": [_run(5000 if i < 0 else p50_ms)]}

        return one

    measures = {"wirelet": measure("wirelet", 100), "virtual_kubelet": measure("vk", 200)}
    entry = await in_rounds(measures, Size(1000, 50), 2, warmup=True)
    assert calls == [
        ("vk", -1),
        ("wirelet", -1),
        ("wirelet", 0),
        ("vk", 0),
        ("vk", 1),
        ("wirelet", 1),
    ]
    assert len(entry["wirelet"]["runs"]) == 2
    assert entry["wirelet"]["create_to_running"]["p50_ms"]["max"] == 100
    assert pods.warms_up(Size(1000, 50), quick=False)
    assert not pods.warms_up(Size(100, 10), quick=False)
    assert not pods.warms_up(Size(1000, 50), quick=True)


async def test_one_stuck_keeps_its_rounds_before_and_misses_later_ones() -> None:
    calls: list[str] = []

    async def stuck_in_round_two(i: int) -> dict[str, Any]:
        calls.append(f"virtual_kubelet {i}")
        if i == 1:
            raise StuckRun("3 of 10 pods not gone within 600s")
        return {"runs": [_run(200)]}

    async def fine(i: int) -> dict[str, Any]:
        calls.append(f"wirelet {i}")
        return {"runs": [_run(100)]}

    measures: dict[str, Measure] = {"wirelet": fine, "virtual_kubelet": stuck_in_round_two}
    entry = await in_rounds(measures, Size(10, 2), 3)
    assert calls == [
        "wirelet 0",
        "virtual_kubelet 0",
        "virtual_kubelet 1",
        "wirelet 1",
        "wirelet 2",
    ]
    vk = entry["virtual_kubelet"]
    assert vk["failed"] == "round 2: 3 of 10 pods not gone within 600s"
    assert len(vk["runs"]) == 1  # round 1 kept
    assert len(entry["wirelet"]["runs"]) == 3
    assert entry["ratio_wirelet_over_vk"]["p50"] == 100 / 200


async def test_an_implementation_stuck_in_its_first_round_has_no_figures() -> None:
    async def stuck(_i: int) -> dict[str, Any]:
        raise StuckRun("nodes not Ready")

    async def fine(_i: int) -> dict[str, Any]:
        return {"runs": [_run(100)]}

    entry = await in_rounds({"wirelet": fine, "virtual_kubelet": stuck}, Size(10, 2), 2)
    assert entry["virtual_kubelet"] == {"failed": "round 1: nodes not Ready"}
    assert "ratio_wirelet_over_vk" not in entry


def test_write_latency_is_the_mean_over_the_span_of_each_kind_of_write() -> None:
    before = {"pods/status PATCH|sum": 1.0, "pods/status PATCH|count": 10.0}
    after = {
        "pods/status PATCH|sum": 3.0,
        "pods/status PATCH|count": 20.0,
        "events POST|sum": 0.5,
        "events POST|count": 5.0,
        "pods DELETE|sum": 9.0,  # none made in the span: left out
        "pods DELETE|count": 0.0,
    }
    assert write_latency_ms(before, after) == {"events POST": 100.0, "pods/status PATCH": 200.0}


def test_small_sizes_get_more_rounds_unless_repeats_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pods.OPTIONS, "fixed_repeats", False)
    assert pods.repeats_at(Size(100, 10), 2, quick=False) == pods.SMALL_SIZE_REPEATS
    assert pods.repeats_at(Size(1000, 50), 2, quick=False) == 2
    assert pods.repeats_at(Size(20, 5), 2, quick=True) == 2
    monkeypatch.setattr(pods.OPTIONS, "fixed_repeats", True)
    assert pods.repeats_at(Size(100, 10), 4, quick=False) == 4
