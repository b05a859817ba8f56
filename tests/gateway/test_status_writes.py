"""Status writes and final deletes the API server refuses: retried with back-off when a retry
may pass, never again unchanged when it cannot (a small stand-in for the API client records
what the controller sends; the end-to-end suite covers the real API server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.kube import api_retry, status_pipeline
from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.events import EventRecorder
from gateway.kube.pod_controller import NodeBinding, PodController
from gateway.kube.pod_state import PodState
from gateway.kube.pod_view import PodView
from gateway.runtime.model import ContainerStatus
from tests.gateway.fakes import until

UID = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f"
POD: dict[str, Any] = {
    "metadata": {"uid": UID, "namespace": "ns", "name": "p"},
    "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "echo"}]},
}


class RefusingApi:
    """Answers PATCH and DELETE with the given statuses in turn (the last one repeats)."""

    def __init__(self, patch: list[int], delete: list[int] | None = None) -> None:
        self.patch_answers = patch
        self.delete_answers = delete or [200]
        self.patches: list[float] = []  # loop times of the attempts
        self.deletes: list[float] = []

    @staticmethod
    def _answer(answers: list[int], calls: list[float], method: str, path: str) -> None:
        calls.append(asyncio.get_running_loop().time())
        status = answers[min(len(calls), len(answers)) - 1]
        if status >= 400:
            raise KubeApiError(status, "Refused", {"message": "no"}, method, path)

    async def patch(
        self, path: str, body: Any, *, kind: str = "merge", answer: bool = True
    ) -> None:
        self._answer(self.patch_answers, self.patches, "PATCH", path)

    async def delete(self, path: str, body: Any = None, *, answer: bool = True) -> None:
        self._answer(self.delete_answers, self.deletes, "DELETE", path)


@contextlib.asynccontextmanager
async def controller_with(api: RefusingApi) -> AsyncIterator[PodController]:
    client: KubeApi = api  # type: ignore[assignment]
    controller = PodController(client, EventRecorder(client, "h"), host_ip="127.0.0.1")
    controller.add_node(NodeBinding("n", {"pods": "10"}))
    controller.pods[UID] = PodState(PodView.parse(POD), preparing=[ContainerStatus("c", "echo")])
    writer = asyncio.create_task(controller.statuses.run(), name="status writer")
    try:
        yield controller
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await controller.close()


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_retry, "API_RETRY_INITIAL_S", 0.05)
    monkeypatch.setattr(api_retry, "API_RETRY_MAX_S", 0.4)


async def test_a_failing_status_write_backs_off() -> None:
    api = RefusingApi(patch=[500])
    async with controller_with(api) as controller:
        controller.changed(UID)
        await until("five attempts", lambda: len(api.patches) >= 5)
        gaps = [b - a for a, b in zip(api.patches, api.patches[1:], strict=False)]
        for failures, gap in enumerate(gaps[:4]):
            assert gap >= min(0.05 * 2**failures, 0.4)


async def test_a_status_write_that_cannot_pass_is_not_sent_again_unchanged() -> None:
    api = RefusingApi(patch=[422])
    async with controller_with(api) as controller:
        controller.changed(UID)
        await until(
            "the write", lambda: api.patches and not controller.statuses.queue.processing(UID)
        )
        controller.changed(UID)  # the same status once more
        await until("the second look", lambda: controller.statuses.skipped == 1)
        assert len(api.patches) == 1


async def test_a_status_write_passes_after_failures_and_resets_the_backoff() -> None:
    api = RefusingApi(patch=[503, 503, 200])
    async with controller_with(api) as controller:
        controller.changed(UID)
        await until("written", lambda: controller.statuses.writes == 1)
        assert controller.pods[UID].write_failures == 0


async def test_the_final_delete_is_retried_until_it_passes() -> None:
    api = RefusingApi(patch=[200], delete=[500, 429, 200])
    async with controller_with(api) as controller:
        controller.finished(UID)
        await until("three deletes", lambda: len(api.deletes) == 3)
        await asyncio.sleep(0)
        assert len(api.deletes) == 3


class HeldApi(RefusingApi):
    """Holds every PATCH until `release` is set, counting those in flight."""

    def __init__(self) -> None:
        super().__init__(patch=[200])
        self.in_flight = 0
        self.release = asyncio.Event()

    async def patch(
        self, path: str, body: Any, *, kind: str = "merge", answer: bool = True
    ) -> None:
        self.in_flight += 1
        await self.release.wait()
        self.in_flight -= 1


def pod(index: int) -> tuple[str, PodState]:
    uid = f"{UID[:-4]}{index:04d}"
    raw = {**POD, "metadata": {"uid": uid, "namespace": "ns", "name": f"p{index}"}}
    return uid, PodState(PodView.parse(raw), preparing=[ContainerStatus("c", "echo")])


async def test_status_writes_in_flight_follow_the_writer_count() -> None:
    api = HeldApi()
    async with controller_with(api) as controller:
        uids = []
        for index in range(3 * status_pipeline.STATUS_WRITERS):
            uid, state = pod(index)
            controller.pods[uid] = state
            uids.append(uid)
            controller.changed(uid)
        await until("the first writes", lambda: api.in_flight == status_pipeline.STATUS_WRITERS)
        controller.statuses.set_writers(2 * status_pipeline.STATUS_WRITERS)
        await until("more writes", lambda: api.in_flight == 2 * status_pipeline.STATUS_WRITERS)
        controller.statuses.set_writers(1)  # never below the floor; writes in flight go on
        assert controller.statuses.writers == status_pipeline.STATUS_WRITERS
        api.release.set()
        await until("every pod written", lambda: controller.statuses.writes == len(uids))
