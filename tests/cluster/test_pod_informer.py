"""The gateway's pod informer against the real API server: it is sent bound pods only."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from kubernetes_asyncio import client

from gateway.kube.api import KubeApi, KubeApiError, load_configuration
from gateway.kube.pod_informer import PodInformer
from hil.cluster.local import LocalCluster


class RecordingInformer(PodInformer):
    """Records the name of every pod the API server sends, before the informer filters."""

    def __init__(self, api: KubeApi) -> None:
        super().__init__(api, lambda _node: True, lambda _kind, _pod: None)
        self.received: list[str] = []
        self.bound_seen = asyncio.Event()

    def _deliver(self, kind: str, pod: dict[str, Any]) -> None:
        self.received.append(pod["metadata"]["name"])
        if pod["metadata"]["name"] == "bound":
            self.bound_seen.set()
        super()._deliver(kind, pod)


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "echo"}], **spec},
    }


async def test_unbound_pods_are_not_sent_to_the_informer(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/pods"
    async with KubeApi(await load_configuration(str(cluster.kubeconfig))) as kube:
        informer = RecordingInformer(kube)
        watching = asyncio.create_task(informer.run(), name="informer")
        try:
            await informer.synced.wait()
            # No node has this label: the scheduler leaves the pod unbound.
            await kube.create(path, pod("unbound", nodeSelector={"no-such": "node"}))
            await kube.create(path, pod("bound", nodeName="t-informer-node"))
            await asyncio.wait_for(informer.bound_seen.wait(), 60)
            # Watch events come in resourceVersion order: had the unbound pod been sent, it
            # would have come before the bound one.
            assert "unbound" not in informer.received
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching


async def test_a_pod_larger_than_a_read_buffer_keeps_the_watch_going(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    """A watch event of 600 KB (a pod with a big env value) is delivered, and so are the events
    after it: aiohttp's readline refused lines over 512 KiB and the watch ended for good."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    async with KubeApi(await load_configuration(str(cluster.kubeconfig))) as kube:
        informer = RecordingInformer(kube)
        watching = asyncio.create_task(informer.run(), name="informer")
        try:
            await informer.synced.wait()
            big = pod("big", nodeName="t-informer-node")
            big["spec"]["containers"][0]["env"] = [{"name": "BLOB", "value": "x" * 600_000}]
            await kube.create(path, big)
            await kube.create(path, pod("bound", nodeName="t-informer-node"))
            ours: dict[str, dict[str, Any]] = {}
            for _ in range(600):  # this namespace's pods (another test's may come and go)
                ours = {
                    p["metadata"]["name"]: p
                    for p in informer.store.values()
                    if p["metadata"]["namespace"] == namespace
                }
                if "bound" in ours:
                    break
                await asyncio.sleep(0.1)
            assert set(ours) == {"big", "bound"}
            assert not watching.done()
            assert len(ours["big"]["spec"]["containers"][0]["env"][0]["value"]) == 600_000
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching


async def test_answers_not_wanted_are_not_decoded(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    """answer=False: the request is made (the server applies it), its answer is dropped."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    async with KubeApi(await load_configuration(str(cluster.kubeconfig))) as kube:
        await kube.create(path, pod("answerless", nodeName="t-answer-node"))
        patch = {"metadata": {"labels": {"patched": "yes"}}}
        assert await kube.patch(f"{path}/answerless", patch, kind="merge", answer=False) is None
        patched = await kube.get(f"{path}/answerless")
        assert patched["metadata"]["labels"] == {"patched": "yes"}
        assert (
            await kube.delete(f"{path}/answerless", {"gracePeriodSeconds": 0}, answer=False) is None
        )
        # A refused request still raises, answer or not.
        with pytest.raises(KubeApiError) as refused:
            await kube.patch(f"{path}/no-such-pod", patch, kind="merge", answer=False)
        assert refused.value.not_found
