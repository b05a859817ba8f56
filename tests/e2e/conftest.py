"""The whole product against real parts: the local control plane, pty devices, the gateway.

`wirelet` starts emulated devices in a temporary directory and a Gateway serving them, with the
kubelet API's serving certificate signed by the cluster CA so `kubectl logs` is verified on
both sides. Protocol and restart timers are shortened through config, never slept on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import (
    GatewayConfig,
    NodeConfig,
    config_from_mapping,
    loopback_settings,
    node_name_for,
)
from gateway.kube.api import KubeApi
from hil.cluster.local import LocalCluster
from hil.cluster.node_address import shared_node_address, shared_problem
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile

# Fast timers for tests: heartbeats, loss detection, reconnects, restart back-off, env retries.
FAST_LINK = {
    "heartbeat_interval": 0.2,
    "link_lost_timeout": 1.0,
    "hello_interval": 0.05,
    "rto_initial": 0.1,
    "rto_min": 0.02,
    "rto_max": 0.5,
    "handshake_timeout": 2.0,
    "reconnect_initial_s": 0.05,
    "reconnect_max_s": 0.3,
    "restart_backoff_initial_s": 0.5,
    "restart_backoff_max_s": 2.0,
    "config_retry_s": 0.3,
}
WAIT = 60.0  # bound for anything that should happen soon; only reached when broken
REPO = Path(__file__).resolve().parents[2]
RBAC = REPO / "deploy" / "rbac.yaml"
GATEWAY_NAME = "e2e"
_gateway_kubeconfigs: dict[Path, Path] = {}


def gateway_kubeconfig(cluster: LocalCluster) -> Path:
    """The gateway's own least-privilege identity, made as a user would: deploy/rbac.yaml
    applied by the admin, then `wirelet bootstrap --approve` (a CSR for user
    wirelet:gateway:e2e in group wirelet:gateways). Once per control plane."""
    known = _gateway_kubeconfigs.get(cluster.run_dir)
    if known is not None:
        return known
    admin = f"--kubeconfig={cluster.kubeconfig}"
    subprocess.run(["kubectl", admin, "apply", "-f", str(RBAC)], check=True, capture_output=True)
    out = cluster.run_dir / "wirelet-gateway"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "bootstrap",
            admin,
            f"--name={GATEWAY_NAME}",
            f"--out={out}",
            "--approve",
            "--timeout=60",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if result.returncode != 0:
        raise AssertionError(f"wirelet bootstrap failed: {result.stdout}{result.stderr}")
    _gateway_kubeconfigs[cluster.run_dir] = out / "kubeconfig"
    return out / "kubeconfig"


@dataclass
class Wirelet:
    cluster: LocalCluster
    fleet: EmulatedFleet
    gateway: Gateway
    api: KubeApi
    namespace: str
    device_dir: Path
    config: GatewayConfig
    # Nodes a test made besides its devices' (deleted with theirs once the gateway stopped).
    extra_nodes: list[str] = field(default_factory=list)

    def node(self, device_id: str) -> str:
        return node_name_for(self.config.nodes if self.config else NodeConfig(), device_id)

    async def kubectl(self, *args: str, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={self.cluster.kubeconfig}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {err.decode()}")
        return out.decode() + ("" if check else err.decode())

    async def create_pod(
        self,
        name: str,
        image: str,
        args: list[str] | None = None,
        *,
        node: str | None = None,
        restart: str = "Never",
        env: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "main", "image": image, "args": args or []}
        if env:
            container["env"] = env
        spec: dict[str, Any] = {
            "restartPolicy": restart,
            "containers": [container],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "terminationGracePeriodSeconds": 5,
        }
        if node:
            spec["nodeName"] = node
        else:
            spec["nodeSelector"] = {"type": "virtual-kubelet"}
        spec.update(extra or {})
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
        return await self.api.create(f"/api/v1/namespaces/{self.namespace}/pods", body)  # type: ignore[no-any-return]

    async def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.api.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")  # type: ignore[no-any-return]
        except Exception as exc:
            if getattr(exc, "not_found", False):
                return None
            raise

    async def wait_for(
        self, what: str, check: Callable[[], Awaitable[Any]], within: float = WAIT
    ) -> Any:
        """Poll the API until `check` returns something truthy."""
        deadline = asyncio.get_running_loop().time() + within
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            last = await check()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last: {json.dumps(last)[:2000]}")

    async def wait_pod_phase(self, name: str, *phases: str) -> dict[str, Any]:
        async def check() -> Any:
            pod = await self.pod(name)
            return pod if pod and (pod.get("status") or {}).get("phase") in phases else None

        return await self.wait_for(f"pod {name} phase in {phases}", check)  # type: ignore[no-any-return]

    async def wait_container(
        self, name: str, predicate: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        async def check() -> Any:
            pod = await self.pod(name)
            statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
            return pod if statuses and predicate(statuses[0]) else None

        return await self.wait_for(f"container of {name}", check)  # type: ignore[no-any-return]

    async def node_ready(self, node: str) -> str:
        try:
            obj = await self.api.get(f"/api/v1/nodes/{node}")
        except Exception:
            return "Missing"
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Ready":
                return str(cond["status"])
        return "Unknown"

    async def wait_node(self, node: str, status: str = "True") -> None:
        async def check() -> bool:
            return await self.node_ready(node) == status

        await self.wait_for(f"node {node} Ready={status}", check)

    async def events_for(self, name: str) -> list[dict[str, Any]]:
        listing = await self.api.get(
            f"/api/v1/namespaces/{self.namespace}/events",
            fieldSelector=f"involvedObject.name={name}",
        )
        return list(listing.get("items") or [])


def gateway_settings(
    cluster: LocalCluster, device_dir: Path, workdir: Path, **overrides: Any
) -> dict[str, dict[str, Any]]:
    """The test gateway's config as TOML-shaped data: fast timers, `overrides` on top.

    The gateway runs as its least-privilege identity (deploy/rbac.yaml) and gets its serving
    certificate from the cluster through a kubelet-serving CSR it approves itself; the API
    server verifies it against the cluster CA for every logs/exec/attach call.
    The kubelet API listens on, and nodes advertise, this machine's TEST-NET address
    (hil.cluster.node_address) so the API server's node proxy works as with a real kubelet;
    where that address cannot be made (not root), loopback, and node-proxy tests skip."""
    address = shared_node_address()
    data = loopback_settings(
        kubeconfig=str(gateway_kubeconfig(cluster)),
        client_ca=str(cluster.ca_cert),
        device_dir=str(device_dir),
        log_dir=str(workdir / "pods"),
    )
    data["kubelet"].update(server_tls_bootstrap=True, serving_cert_approve=True)
    if address is not None:
        data["kubelet"].update(address=address.ip, node_ip=address.ip)
    data["nodes"] = {"lease_renew_interval_s": 1.0, "status_interval_s": 5.0}
    data["link"] = dict(FAST_LINK)
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return data


def require_node_proxy_address() -> str:
    """The node address the API server proxies to; skips the test where none can be made."""
    address = shared_node_address()
    if address is None:
        pytest.skip(
            f"no non-loopback test address for the API server's node proxy: {shared_problem()}"
        )
    return address.ip


def gateway_config(
    cluster: LocalCluster, device_dir: Path, workdir: Path, **overrides: Any
) -> GatewayConfig:
    return config_from_mapping(
        gateway_settings(cluster, device_dir, workdir, **overrides), "test-config"
    )


def profiles(count: int, prefix: str, **kwargs: Any) -> list[DeviceProfile]:
    return [DeviceProfile(device_id=f"{prefix}{i}", **kwargs) for i in range(count)]


@contextlib.asynccontextmanager
async def running_gateway(
    cluster: LocalCluster,
    tmp_path: Path,
    *,
    devices: int,
    prefix: str,
    config_overrides: dict[str, Any] | None = None,
    device_kwargs: dict[str, Any] | None = None,
) -> AsyncIterator[Wirelet]:
    """`devices` emulated devices and a gateway serving them, in a fresh namespace; cleaned up."""
    suffix = uuid.uuid4().hex[:6]
    device_dir = tmp_path / "devices"
    device_dir.mkdir()
    config = gateway_config(cluster, device_dir, tmp_path, **(config_overrides or {}))
    namespace = f"{prefix}-{suffix}"
    device_profiles = profiles(devices, f"{prefix}{suffix}-", **(device_kwargs or {}))
    async with (
        KubeApi(await _admin_configuration(cluster)) as api,
        EmulatedFleet(device_dir, device_profiles, control_socket=False) as fleet,
    ):
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        await _wait_default_sa(api, namespace)
        gateway = Gateway(config)
        env = Wirelet(cluster, fleet, gateway, api, namespace, device_dir, config)
        try:
            async with gateway:
                yield env
        finally:
            # After the gateway stopped, or it would re-create the nodes it still serves; a
            # stale Ready node would attract the next test's pods.
            nodes = [env.node(d.profile.device_id) for d in fleet.devices]
            await _delete_nodes(api, nodes + env.extra_nodes)
            await api.delete(f"/api/v1/namespaces/{namespace}")


@pytest.fixture
async def wirelet(
    cluster: LocalCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Wirelet]:
    """Three devices and a gateway. Overrides: `@pytest.mark.gateway_config(section={...})`
    for the gateway, `@pytest.mark.device_profile(field=value)` for every device."""
    config_marker = request.node.get_closest_marker("gateway_config")
    device_marker = request.node.get_closest_marker("device_profile")
    async with running_gateway(
        cluster,
        tmp_path,
        devices=3,
        prefix="e2e",
        config_overrides=config_marker.kwargs if config_marker else None,
        device_kwargs=device_marker.kwargs if device_marker else None,
    ) as env:
        yield env


async def _admin_configuration(cluster: LocalCluster) -> Any:
    from gateway.kube.api import load_configuration

    return await load_configuration(str(cluster.kubeconfig))


async def _wait_default_sa(api: KubeApi, namespace: str) -> None:
    for _ in range(300):
        try:
            await api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            return
        except Exception:
            await asyncio.sleep(0.1)


async def _delete_nodes(api: KubeApi, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            await api.delete(f"/api/v1/nodes/{name}")
