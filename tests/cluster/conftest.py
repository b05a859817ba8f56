"""Fixtures for control-plane tests: an admin API client and a scratch namespace."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client, config

from hil.cluster.local import LocalCluster


@pytest.fixture
async def api(cluster: LocalCluster) -> AsyncIterator[client.ApiClient]:
    """kubernetes_asyncio client as cluster admin, closed after the test (no leaked sessions)."""
    conf = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=conf)
    async with client.ApiClient(conf) as api_client:
        yield api_client


@pytest.fixture
async def namespace(api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists (pods need it to be admitted)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    for _ in range(240):
        accounts = await core.list_namespaced_service_account(name)
        if any(sa.metadata.name == "default" for sa in accounts.items):
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail(f"controller-manager never created the default ServiceAccount in {name}")
    yield name
    await core.delete_namespace(name)
