"""The gateway's events are written by several writers while no pod status write waits, by one
while some do, and a repeat still counts up the event already written instead of adding one."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from gateway.kube.api import KubeApi
from gateway.kube.events import EventRecorder, ObjectRef
from hil.cluster.local import LocalCluster
from tests.e2e.conftest import Wirelet, _admin_configuration
from tests.gateway.fakes import until

EVENTS = 40


async def _written(recorder: EventRecorder, busy: bool) -> tuple[EventRecorder, list[Any]]:
    """EVENTS events of as many pods, and five repeats of one, written into a new namespace."""
    api = recorder.api
    recorder.yield_to(lambda: busy)
    namespace = f"ev-{uuid.uuid4().hex[:8]}"
    await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    try:
        for i in range(EVENTS):
            pod = ObjectRef("Pod", namespace, f"p{i}", f"uid-{namespace}-{i}")
            recorder.record(pod, "Normal", "Started", "Started container main")
        for _ in range(5):  # five repeats of one: one event, counted up
            recorder.record(pod, "Warning", "BackOff", "Back-off restarting failed container")
        writers = asyncio.create_task(recorder.run())
        try:
            await until("all written", lambda: recorder.idle)
        finally:
            writers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writers
        listing = await api.get(f"/api/v1/namespaces/{namespace}/events")
    finally:
        await api.delete(f"/api/v1/namespaces/{namespace}")
    return recorder, list(listing["items"])


async def test_events_are_written_by_several_writers_while_statuses_are_idle(
    cluster: LocalCluster,
) -> None:
    async with KubeApi(await _admin_configuration(cluster)) as api:
        recorder, items = await _written(EventRecorder(api, "test-host"), busy=False)
    assert recorder.most_in_flight > 1
    assert len(items) == EVENTS + 1
    (backoff,) = [e for e in items if e["reason"] == "BackOff"]
    assert backoff["count"] == 5


async def test_only_one_writer_writes_while_status_writes_wait(cluster: LocalCluster) -> None:
    async with KubeApi(await _admin_configuration(cluster)) as api:
        recorder, items = await _written(EventRecorder(api, "test-host"), busy=True)
    assert recorder.most_in_flight == 1
    assert len(items) == EVENTS + 1


@pytest.mark.gateway_config(kube={"qps": 1, "burst": 2})
async def test_the_events_budget_grows_with_the_devices_served(wirelet: Wirelet) -> None:
    """As the status writes' budget: 5 QPS and a burst of 10 per device, [kube] the floor (at a
    fixed 50 QPS, 1000 pods started on 50 devices left 80 s of events behind them)."""
    for device in wirelet.fleet.devices:
        await wirelet.wait_node(wirelet.node(device.profile.device_id))
    limiter = wirelet.gateway.parts.events.api.limiter
    assert (limiter.rate, limiter.capacity) == (15.0, 30.0)
