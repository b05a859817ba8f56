"""Many devices on one gateway, and the kubelet API's refusals seen through the gateway's port."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hil.cluster.local import LocalCluster

from .conftest import Wirelet, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DEVICES = 20


@pytest.fixture
async def fleet20(cluster: LocalCluster, tmp_path: Path) -> AsyncIterator[Wirelet]:
    async with running_gateway(cluster, tmp_path, devices=DEVICES, prefix="scale") as env:
        yield env


async def test_twenty_devices_each_run_a_pod(fleet20: Wirelet) -> None:
    nodes = [fleet20.node(d.profile.device_id) for d in fleet20.fleet.devices]
    for node in nodes:
        await fleet20.wait_node(node)
    for i, node in enumerate(nodes):
        await fleet20.create_pod(f"p{i}", "echo", [f"pod {i}"], node=node)
    for i in range(len(nodes)):
        pod = await fleet20.wait_pod_phase(f"p{i}", "Succeeded", "Failed")
        assert pod["status"]["phase"] == "Succeeded"
    logs = await fleet20.kubectl("logs", "-n", fleet20.namespace, "p7")
    assert "pod 7" in logs


async def test_kubelet_api_without_credentials_is_401(fleet20: Wirelet) -> None:
    context = ssl.create_default_context(cafile=str(fleet20.cluster.ca_cert))
    url = f"https://{fleet20.gateway.node_ip}:{fleet20.gateway.kubelet_port}/pods"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(url) as response,
    ):
        assert response.status == 401


async def test_kubelet_api_user_without_rights_is_403(fleet20: Wirelet, tmp_path: Path) -> None:
    cert, key = fleet20.cluster.sign_client_cert("intruder", ["nobody"], tmp_path)
    context = ssl.create_default_context(cafile=str(fleet20.cluster.ca_cert))
    context.load_cert_chain(cert, key)
    url = f"https://{fleet20.gateway.node_ip}:{fleet20.gateway.kubelet_port}/pods"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(url) as response,
    ):
        assert response.status == 403
        assert "user=intruder" in await response.text()
