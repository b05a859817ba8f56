"""One gateway serving a raw USB device and a serial device at once, on the real control plane.

The gateway runs as a child of hil/emulator/usb_gadget.py under umockdev, so its USB device is
reached through pyusb -> libusb -> usbdevfs (see umockdev_env.py); its serial device is an
emulated device on a pty in a directory of links, opened as usual (the testbed leaves /dev/pts
alone). Checked through the API server and kubectl, as a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.processes import write_toml
from gateway.kube.api import KubeApi, load_configuration
from hil.cluster.local import LocalCluster
from hil.emulator.apps import flood_bytes
from tests.e2e.conftest import gateway_settings
from tests.usb.umockdev_env import emulated_device, gadget, umockdev_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(umockdev_missing()), reason=umockdev_missing() or "ok"),
    pytest.mark.timeout(300),
]
WAIT = 60.0


class Cluster:
    def __init__(self, cluster: LocalCluster, api: KubeApi, namespace: str) -> None:
        self.cluster, self.api, self.namespace = cluster, api, namespace

    async def kubectl(self, *args: str) -> str:
        result = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", f"--kubeconfig={self.cluster.kubeconfig}", "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    async def wait_for(self, what: str, check: Any) -> Any:
        deadline = asyncio.get_running_loop().time() + WAIT
        last = None
        while asyncio.get_running_loop().time() < deadline:
            last = await check()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last: {str(last)[:2000]}")

    async def ready(self, node: str) -> str:
        try:
            obj = await self.api.get(f"/api/v1/nodes/{node}")
        except Exception:
            return "Missing"
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Ready":
                return str(condition["status"])
        return "Unknown"

    async def wait_ready(self, node: str, status: str = "True") -> None:
        async def check() -> bool:
            return await self.ready(node) == status

        await self.wait_for(f"node {node} Ready={status}", check)

    async def run_pod(self, name: str, node: str, image: str, args: list[str]) -> None:
        spec = {
            "restartPolicy": "Never",
            "nodeName": node,
            "containers": [{"name": "main", "image": image, "args": args}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "terminationGracePeriodSeconds": 2,
        }
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
        await self.api.create(f"/api/v1/namespaces/{self.namespace}/pods", body)

    async def pod_status(self, name: str) -> dict[str, Any]:
        pod = await self.api.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        return dict(pod.get("status") or {})

    async def wait_phase(self, name: str, *phases: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            status = await self.pod_status(name)
            return status if status.get("phase") in phases else None

        result: dict[str, Any] = await self.wait_for(f"pod {name} in {phases}", check)
        return result


async def test_one_gateway_serves_a_usb_and_a_serial_device(  # noqa: PLR0915 (one end-to-end story of two transports)
    cluster: LocalCluster, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    usb_id, serial_id = f"usbe2e-{suffix}", f"sere2e-{suffix}"
    usb_node, serial_node = f"wirelet-{usb_id}", f"wirelet-{serial_id}"
    serial_dir = tmp_path / "serial-devices"
    settings = gateway_settings(cluster, serial_dir, tmp_path, devices={"usb": ["cafe:4001"]})
    config = write_toml(tmp_path / "wirelet.toml", settings)
    gateway_log = (tmp_path / "gateway.log").open("w")
    namespace = f"usb-{suffix}"
    with (
        emulated_device(tmp_path / "usb-device", usb_id) as usb_pty,
        emulated_device(serial_dir, serial_id),
        gadget(
            usb_pty,
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
            stderr=gateway_log,
        ) as running,
    ):
        async with KubeApi(await load_configuration(str(cluster.kubeconfig))) as api:
            kube = Cluster(cluster, api, namespace)
            await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
            try:
                await asyncio.to_thread(running.until, "ready")
                await kube.wait_ready(usb_node)
                await kube.wait_ready(serial_node)
                usb_labels = (await api.get(f"/api/v1/nodes/{usb_node}"))["metadata"]["labels"]
                serial_labels = (await api.get(f"/api/v1/nodes/{serial_node}"))["metadata"][
                    "labels"
                ]
                assert usb_labels["wirelet.io/transport"] == "usb"
                assert serial_labels["wirelet.io/transport"] == "serial"

                # Both devices run pods at the same time; output reaches kubectl logs -f.
                await kube.run_pod("usb-count", usb_node, "counter", ["5", "50"])
                await kube.run_pod("serial-count", serial_node, "counter", ["5", "50"])
                await kube.run_pod("usb-ticker", usb_node, "forever", ["100"])
                await kube.wait_phase("usb-count", "Running", "Succeeded")
                assert (await kube.kubectl("logs", "-f", "usb-count")).split() == [
                    "1",
                    "2",
                    "3",
                    "4",
                    "5",
                ]
                assert (await kube.kubectl("logs", "-f", "serial-count")).split()[-1] == "5"

                # 1 MB through the USB pipes into the pod log: every byte once, in order.
                await kube.run_pod("usb-flood", usb_node, "flood", [str(1 << 20)])
                await kube.wait_phase("usb-flood", "Succeeded")
                log = await kube.kubectl("logs", "usb-flood")
                assert log.encode() == flood_bytes(0, 1 << 20)

                # Unplugged: that node NotReady, the serial one untouched.
                await kube.wait_phase("usb-ticker", "Running")
                running.send("unplug")
                await asyncio.to_thread(running.until, "unplugged")
                await kube.wait_ready(usb_node, "False")
                assert await kube.ready(serial_node) == "True"

                # Back at a new address: the same node Ready, the ticker adopted, not restarted.
                running.send("plug")
                await asyncio.to_thread(running.until, "plugged")
                await kube.wait_ready(usb_node)
                status = await kube.pod_status("usb-ticker")
                assert status["phase"] == "Running"
                [container] = status["containerStatuses"]
                assert container["restartCount"] == 0 and "running" in container["state"]
                before = (await kube.kubectl("logs", "usb-ticker")).count("tick")

                async def ticks_again() -> bool:
                    return (await kube.kubectl("logs", "usb-ticker")).count("tick") > before

                await kube.wait_for("ticker output after the replug", ticks_again)
            finally:
                running.send("quit")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(running.process.wait, 30)
                for node in (usb_node, serial_node):
                    with contextlib.suppress(Exception):
                        await api.delete(f"/api/v1/nodes/{node}")
                with contextlib.suppress(Exception):
                    await api.delete(f"/api/v1/namespaces/{namespace}")
    gateway_log.close()
