"""Pod status writes on a real API server: a PUT from the pod as last seen, the merge patch when
that copy is out of date, and a role without `update` on pods/status (gateway.kube.status_write)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.kube.api import KubeApi, KubeApiError, load_configuration
from gateway.kube.pod_status import pod_status
from gateway.kube.pod_view import PodView
from gateway.kube.status_write import StatusWriter, another_pod, merge_patch
from gateway.runtime.model import ContainerPhase, ContainerState, ContainerStatus, RestartPolicy
from hil.cluster.local import LocalCluster

NODE = "status-write-node"  # never exists: nothing but these tests touches the pods


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None, "h": {"i": None, "j": 1}}, "l": [None], "n": None}
    assert merge_patch(target, patch) == {
        "a": "z",
        "c": {"d": "e", "h": {"j": 1}},
        "l": [None],  # lists are replaced as they are
    }
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}  # left as it was


def running_status() -> dict[str, Any]:
    now = datetime.now(UTC)
    container = ContainerStatus("main", "forever", ready=True, task_id="t-1")
    container.state = ContainerState(ContainerPhase.RUNNING, started_at=now, task_id="t-1")
    return pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[container],
        host_ip="127.0.0.1",
        start_time=now,
        now=now,
        node_ready=True,
    )


@contextlib.asynccontextmanager
async def admin(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await load_configuration(str(cluster.kubeconfig)))
    try:
        yield api
    finally:
        await api.close()


async def namespace(api: KubeApi) -> str:
    name = f"status-write-{uuid.uuid4().hex[:8]}"
    await api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    return name


async def bound_pod(api: KubeApi, ns: str, name: str = "p") -> dict[str, Any]:
    body = {
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "forever"}]},
    }
    created: dict[str, Any] = await api.create(f"/api/v1/namespaces/{ns}/pods", body)
    return created


pytestmark = pytest.mark.integration


async def test_a_status_is_put_and_keeps_what_the_api_server_set(cluster: LocalCluster) -> None:
    async with admin(cluster) as api:
        ns = await namespace(api)
        pod = await bound_pod(api, ns)
        writer = StatusWriter(api)
        view = PodView.parse(pod)
        stale = await writer.write(view, running_status(), stale_version="")
        assert (writer.replaced, writer.patched, writer.conflicts) == (1, 0, 0)
        assert stale == view.resource_version
        stored = await api.get(f"/api/v1/namespaces/{ns}/pods/p")
        assert stored["status"]["phase"] == "Running"
        assert stored["status"]["containerStatuses"][0]["state"]["running"]
        assert stored["status"]["qosClass"] == "BestEffort"  # set at creation, kept
        assert stored["metadata"]["labels"] == {"app": "x"}

        # The same view again (the watch has not shown the write yet): a PUT from it would
        # conflict, so the patch goes at once.
        failed = running_status()
        failed["phase"] = "Failed"
        await writer.write(view, failed, stale_version=stale)
        assert (writer.replaced, writer.patched, writer.conflicts) == (1, 1, 0)
        stored = await api.get(f"/api/v1/namespaces/{ns}/pods/p")
        assert stored["status"]["phase"] == "Failed"


async def test_a_pod_changed_since_it_was_seen_gets_the_patch(cluster: LocalCluster) -> None:
    async with admin(cluster) as api:
        ns = await namespace(api)
        view = PodView.parse(await bound_pod(api, ns))
        # Someone labels the pod; the gateway's copy is now older than the stored pod.
        await api.patch(
            f"/api/v1/namespaces/{ns}/pods/p", {"metadata": {"labels": {"b": "y"}}}, kind="merge"
        )
        writer = StatusWriter(api)
        await writer.write(view, running_status(), stale_version="")
        assert (writer.replaced, writer.patched, writer.conflicts) == (0, 1, 1)
        stored = await api.get(f"/api/v1/namespaces/{ns}/pods/p")
        assert stored["status"]["phase"] == "Running"
        assert stored["metadata"]["labels"] == {"app": "x", "b": "y"}  # their change stays
        assert writer.by_replace  # a conflict says nothing about the role


async def test_another_pod_of_the_same_name_is_not_written(cluster: LocalCluster) -> None:
    async with admin(cluster) as api:
        ns = await namespace(api)
        old = PodView.parse(await bound_pod(api, ns))
        await api.delete(f"/api/v1/namespaces/{ns}/pods/p", {"gracePeriodSeconds": 0})
        await bound_pod(api, ns)
        writer = StatusWriter(api)
        with pytest.raises(KubeApiError) as refused:
            await writer.write(old, running_status(), stale_version="")
        assert another_pod(refused.value)  # the controller lets the write go
        stored = await api.get(f"/api/v1/namespaces/{ns}/pods/p")
        assert stored["status"].get("phase") == "Pending"


async def test_a_role_without_update_writes_by_patch_and_says_so_once(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    async with admin(cluster) as api:
        ns = await namespace(api)
        user = f"status-patcher-{ns}"
        rules = [
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
        ]
        await api.create(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            {"metadata": {"name": "patch-only"}, "rules": rules},
        )
        await api.create(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "metadata": {"name": "patch-only"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "patch-only",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
        first = PodView.parse(await bound_pod(api, ns, "a"))
        second = PodView.parse(await bound_pod(api, ns, "b"))
        kubeconfig = cluster.client_kubeconfig(user, [])
        limited = KubeApi(await load_configuration(str(kubeconfig)))
        try:
            writer = StatusWriter(limited)
            with caplog.at_level(logging.WARNING, logger="gateway.kube.status_write"):
                await writer.write(first, running_status(), stale_version="")
                await writer.write(second, running_status(), stale_version="")
        finally:
            await limited.close()
        assert (writer.replaced, writer.patched, writer.by_replace) == (0, 2, False)
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "403" in warnings[0] and "rbac.yaml" in warnings[0]
        for name in ("a", "b"):
            stored = await api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
            assert stored["status"]["phase"] == "Running"
