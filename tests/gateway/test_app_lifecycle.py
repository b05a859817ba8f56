"""Gateway start and stop in process, against an API server that is not there.

Built in one phase on an AsyncExitStack: a failed start tears down what it had built, a stop
leaves no task behind and no key on disk, and stopping twice is harmless."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import GatewayConfig, config_from_mapping
from gateway.errors import ConfigError
from tests.offline_cluster import offline_kubeconfig


def offline_config(tmp_path: Path, kubelet_port: int = 0) -> GatewayConfig:
    devices = tmp_path / "devices"
    devices.mkdir(exist_ok=True)
    return config_from_mapping(
        {
            "gateway": {"state_dir": str(tmp_path / "state")},
            "kube": {"kubeconfig": str(offline_kubeconfig(tmp_path))},
            "devices": {"dirs": [str(devices)]},
            "kubelet": {"address": "127.0.0.1", "port": kubelet_port, "node_ip": "127.0.0.1"},
            "logs": {"dir": str(tmp_path / "pods")},
        },
        "test",
    )


def others() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


def private_files(config: GatewayConfig) -> list[Path]:
    private = Path(config.gateway.state_dir) / "private"
    return sorted(private.rglob("*")) if private.exists() else []


async def test_a_failed_start_tears_down_what_it_had_built(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = offline_config(tmp_path, kubelet_port=busy.getsockname()[1])
        gateway = Gateway(config)
        with pytest.raises(ConfigError, match=r"kubelet\.port: cannot listen"):
            await gateway.start()
    assert others() == set()
    assert private_files(config) == []
    with pytest.raises(RuntimeError, match="not started"):
        _ = gateway.api
    await gateway.stop()  # nothing left to stop: harmless


async def test_stop_leaves_no_task_and_no_key_and_may_be_repeated(tmp_path: Path) -> None:
    config = offline_config(tmp_path)
    async with Gateway(config) as gateway:
        assert gateway.kubelet_port > 0 and gateway.node_ip == "127.0.0.1"
        names = {task.get_name() for task in others()}
        assert {"events", "pod status", "pod informer", "log cleanup"} <= names
        assert "device discovery" in names
        assert private_files(config) == []  # keys live in memory once the clients are built
    assert others() == set()
    assert private_files(config) == []
    await gateway.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = gateway.devices


async def test_a_started_gateway_refuses_a_second_start(tmp_path: Path) -> None:
    async with Gateway(offline_config(tmp_path)) as gateway:
        with pytest.raises(RuntimeError, match="started already"):
            await gateway.start()
