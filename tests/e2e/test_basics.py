"""Devices become Ready nodes; a pod runs on one, its logs come back through kubectl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Wirelet, require_node_proxy_address

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_nodes_ready_with_labels_taint_capacity(wirelet: Wirelet) -> None:
    for device in wirelet.fleet.devices:
        name = wirelet.node(device.profile.device_id)
        await wirelet.wait_node(name)
        node = await wirelet.api.get(f"/api/v1/nodes/{name}")
        labels = node["metadata"]["labels"]
        assert labels["type"] == "virtual-kubelet"
        assert labels["kubernetes.io/role"] == "agent"
        assert labels["wirelet.io/device-id"] == device.profile.device_id
        ours = {"key": "virtual-kubelet.io/provider", "value": "wirelet", "effect": "NoSchedule"}
        assert ours in node["spec"]["taints"]
        assert node["status"]["capacity"]["pods"] == str(device.profile.task_slots)
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        assert wirelet.gateway.server is not None
        assert port == wirelet.gateway.server.node_port(name)  # its own endpoint
        assert node["status"]["declaredFeatures"] == ["ExtendWebSocketsToKubelet"]
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"

        async def lease(path: str = lease_path) -> Any:
            try:
                return await wirelet.api.get(path)
            except Exception:
                return None  # the first renewal follows the Ready status write

        found = await wirelet.wait_for(f"the Lease of {name}", lease)
        # The gateway holds its nodes' leases (one owner per node, see test_nodes.py).
        assert found["spec"]["holderIdentity"] == wirelet.gateway.identity
        assert node["metadata"]["annotations"]["wirelet.io/owner"] == wirelet.gateway.identity
        assert node["status"]["nodeInfo"]["bootID"]


async def test_scheduled_pod_runs_and_kubectl_logs_shows_output(wirelet: Wirelet) -> None:
    await wirelet.create_pod("hello", "echo", ["hello", "from", "a", "device"])
    pod = await wirelet.wait_pod_phase("hello", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert pod["spec"]["nodeName"].startswith("wirelet-")  # bound by kube-scheduler
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "hello")
    assert "hello from a device" in logs


async def test_failing_exit_code_fails_the_pod(wirelet: Wirelet) -> None:
    await wirelet.create_pod("boom", "exit", ["3"])
    pod = await wirelet.wait_pod_phase("boom", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


async def test_stats_summary_carries_device_load(wirelet: Wirelet) -> None:
    """Through the API server's node proxy, as metrics-server reads it."""
    require_node_proxy_address()
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("loaded", "forever", ["100"], node=node, restart="Always")
    await wirelet.wait_container("loaded", lambda c: "running" in c["state"])

    async def summary() -> Any:
        body = json.loads(
            await wirelet.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary")
        )
        pods = {p["podRef"]["name"] for p in body.get("pods") or []}
        memory = body["node"].get("memory", {}).get("workingSetBytes", 0)
        return body if "loaded" in pods and memory else None

    entry = await wirelet.wait_for("a load report in /stats/summary", summary)
    assert entry["node"]["nodeName"] == node
    assert entry["node"]["memory"]["workingSetBytes"] > 0


async def test_deleted_node_is_created_again_while_device_attached(wirelet: Wirelet) -> None:
    node = wirelet.node(wirelet.fleet.devices[2].profile.device_id)
    await wirelet.wait_node(node)
    old_uid = (await wirelet.api.get(f"/api/v1/nodes/{node}"))["metadata"]["uid"]
    await wirelet.api.delete(f"/api/v1/nodes/{node}")

    async def recreated() -> bool:
        try:
            obj = await wirelet.api.get(f"/api/v1/nodes/{node}")
        except Exception:
            return False
        return bool(obj["metadata"]["uid"] != old_uid)

    await wirelet.wait_for("the node to be created again", recreated)
    await wirelet.wait_node(node)


async def test_example_job_and_deployment_run_on_device_nodes(wirelet: Wirelet) -> None:
    examples = EXAMPLES
    ns = wirelet.namespace
    await wirelet.kubectl("apply", "-n", ns, "-f", str(examples / "job.yaml"))
    await wirelet.kubectl("apply", "-n", ns, "-f", str(examples / "deployment.yaml"))

    async def job_done() -> bool:
        job = await wirelet.api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/hello-devices")
        return bool((job.get("status") or {}).get("succeeded", 0) >= 3)

    async def deployment_ready() -> bool:
        dep = await wirelet.api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/heartbeat")
        return bool((dep.get("status") or {}).get("readyReplicas", 0) >= 3)

    await wirelet.wait_for("the example Job to complete 3 times", job_done)
    await wirelet.wait_for("the example Deployment to have 3 ready replicas", deployment_ready)
