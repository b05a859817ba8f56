"""The whole product against the C device library: the real control plane, the gateway serving
`wirelet-hostdev` (the C library on a pty) from its device directory. The node comes up Ready
with the device's facts, pods run to completion with their exit codes and logs, and a graceful
delete stops a running task."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster
from tests.e2e.conftest import (
    WAIT,
    Wirelet,
    _admin_configuration,
    _delete_nodes,
    _wait_default_sa,
    gateway_config,
)

from .clib import Library, build

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def device_dir(library: Library, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A device directory with one wirelet-hostdev in it; yields (dir, device id)."""
    directory = tmp_path / "devices"
    directory.mkdir()
    device_id = f"c-e2e-{uuid.uuid4().hex[:6]}"
    process = subprocess.Popen(
        [
            str(build() / "wirelet-hostdev"),
            "--link",
            str(directory / device_id),
            "--device-id",
            device_id,
            "--hello-ms",
            "50",
            "--rto-initial-ms",
            "100",
            "--rto-min-ms",
            "20",
            "--rto-max-ms",
            "500",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()  # the tty: the link exists from now on
    yield directory, device_id
    process.terminate()
    assert process.wait(timeout=WAIT) == 0


async def test_pods_run_on_the_c_device(
    cluster: LocalCluster, tmp_path: Path, device_dir: tuple[Path, str]
) -> None:
    directory, device_id = device_dir
    namespace = f"clib-{uuid.uuid4().hex[:6]}"
    node = f"wirelet-{device_id}"
    config = gateway_config(cluster, directory, tmp_path)
    async with KubeApi(await _admin_configuration(cluster)) as api:
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        await _wait_default_sa(api, namespace)
        gateway = Gateway(config)
        env = Wirelet(cluster, None, gateway, api, namespace, directory, config)  # type: ignore[arg-type]
        try:
            async with gateway:
                await env.wait_node(node)
                facts = await api.get(f"/api/v1/nodes/{node}")
                labels = facts["metadata"]["labels"]
                assert labels["wirelet.io/firmware"] == "wirelet-hostdev"
                assert labels["wirelet.io/device-id"] == device_id
                assert facts["status"]["capacity"]["pods"] == "4"

                await env.create_pod("count", "counter", ["3", "10"], node=node)
                pod = await env.wait_pod_phase("count", "Succeeded")
                assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
                logs = await env.kubectl("logs", "-n", namespace, "count")
                assert logs == "1\n2\n3\n"

                await env.create_pod("fail", "exit", ["3", "bye"], node=node)
                pod = await env.wait_pod_phase("fail", "Failed")
                terminated: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"][
                    "terminated"
                ]
                assert terminated["exitCode"] == 3

                await env.create_pod("long", "forever", ["50"], node=node, restart="Always")
                await env.wait_container("long", lambda c: "running" in c["state"])
                await env.kubectl("delete", "pod", "-n", namespace, "long", "--wait=true")
                assert await env.pod("long") is None
        finally:
            await _delete_nodes(api, [node])
            await api.delete(f"/api/v1/namespaces/{namespace}")
