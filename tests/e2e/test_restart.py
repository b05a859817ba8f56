"""Kill the gateway with SIGKILL while pods run, start it again: nothing is started twice, the
node stays, and the log continues without losing what the device printed meanwhile."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.processes import write_toml
from firmware_protocol import StartTask, StopTask
from gateway.app import Gateway
from gateway.config import config_from_mapping
from gateway.kube.api import KubeApi, load_configuration
from gateway.logs.layout import pod_dir_name
from hil.cluster.local import LocalCluster
from hil.emulator.fleet import EmulatedFleet

from .conftest import Wirelet, _delete_nodes, _wait_default_sa, gateway_settings, profiles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


class GatewayProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "run",
                "-c",
                str(self.config),
                stdout=out,
                stderr=out,
            )
        finally:
            os.close(out)

    async def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def external(
    cluster: LocalCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Wirelet, GatewayProcess]]:
    suffix = uuid.uuid4().hex[:6]
    device_dir = tmp_path / "devices"
    device_dir.mkdir()
    config = tmp_path / "wirelet.toml"
    gateway_settings_data = gateway_settings(cluster, device_dir, tmp_path)
    write_toml(config, gateway_settings_data)
    namespace = f"restart-{suffix}"
    marker = request.node.get_closest_marker("device_profile")
    device_profiles = profiles(1, f"rst{suffix}-", **(marker.kwargs if marker else {}))
    async with (
        KubeApi(await load_configuration(str(cluster.kubeconfig))) as api,
        EmulatedFleet(device_dir, device_profiles, control_socket=False) as fleet,
    ):
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        await _wait_default_sa(api, namespace)
        process = GatewayProcess(config, tmp_path / "gateway.log")
        gateway_config = config_from_mapping(gateway_settings_data, str(config))
        env = Wirelet(cluster, fleet, None, api, namespace, device_dir, gateway_config)  # type: ignore[arg-type]
        try:
            await process.start()
            yield env, process
        finally:
            await process.stop()
            await _delete_nodes(api, [env.node(d.profile.device_id) for d in fleet.devices])
            await api.delete(f"/api/v1/namespaces/{namespace}")


async def test_sigkill_and_restart_adopts_tasks_and_keeps_logs(
    external: tuple[Wirelet, GatewayProcess],
) -> None:
    wirelet, process = external
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    created = await wirelet.create_pod("survivor", "counter", ["60", "50"], node=node)
    uid = created["metadata"]["uid"]
    await wirelet.wait_container("survivor", lambda c: "running" in c["state"])

    await process.kill()
    node_uid = (await wirelet.api.get(f"/api/v1/nodes/{node}"))["metadata"]["uid"]
    await asyncio.sleep(0.5)  # the device keeps printing while no gateway listens
    await process.start()

    pod = await wirelet.wait_pod_phase("survivor", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    starts = [m for m in device.received if isinstance(m, StartTask) and m.task_id.startswith(uid)]
    assert len(starts) == 1, "the restarted gateway started the task a second time"
    assert (await wirelet.api.get(f"/api/v1/nodes/{node}"))["metadata"]["uid"] == node_uid
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "survivor")
    lines = logs.split()
    assert lines == [str(i) for i in range(1, 61)], f"log not continuous: {lines}"


async def test_tasks_of_pods_deleted_while_gateway_was_down_are_stopped(
    wirelet: Wirelet,
) -> None:
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    created = await wirelet.create_pod("orphan", "forever", ["100"], node=node, restart="Always")
    await wirelet.wait_container("orphan", lambda c: "running" in c["state"])
    task_id = f"{created['metadata']['uid']}/0/0"
    await wirelet.gateway.stop()  # the task keeps running on the device
    await wirelet.api.delete(
        f"/api/v1/namespaces/{wirelet.namespace}/pods/orphan", {"gracePeriodSeconds": 0}
    )
    assert task_id in device.task_ids()
    async with Gateway(wirelet.config):

        async def stopped() -> bool:
            return any(isinstance(m, StopTask) and m.task_id == task_id for m in device.received)

        await wirelet.wait_for("the orphaned task to be stopped", stopped)


# Kill points: half a random moment after a (re)start (before the device is found, during the
# handshake while it re-sends what it kept, during adoption), half once the log has grown.
KILLS = 10
FLOOD_LINES = 20_000  # 320 KB of numbered 16-byte lines


@pytest.mark.device_profile(baud=921_600)  # ~90 KB/s, so the output spans every restart
async def test_sigkill_at_many_points_of_a_flood_loses_and_repeats_no_line(
    external: tuple[Wirelet, GatewayProcess],
) -> None:
    wirelet, process = external
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    created = await wirelet.create_pod("flood", "flood", [str(FLOOD_LINES * 16)], node=node)
    uid = created["metadata"]["uid"]
    log_file = (
        Path(wirelet.config.logs.dir)
        / pod_dir_name(wirelet.namespace, "flood", uid)
        / "main"
        / "0.log"
    )
    rng = random.Random(20261201)

    def log_size() -> int:
        try:
            return log_file.stat().st_size
        except FileNotFoundError:
            return 0

    for point in range(KILLS):
        if point % 2:
            grown = log_size() + 8 * 1024

            async def log_grew(target: int = grown) -> bool:
                return log_size() >= target

            await wirelet.wait_for("the log to grow", log_grew)
        else:
            await asyncio.sleep(rng.uniform(0.0, 1.5))
        await process.kill()
        await process.start()

    pod = await wirelet.wait_pod_phase("flood", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]

    # An exit seen in the task list after a restart can come before the device has re-sent
    # the task's last output: the log is complete once the device holds nothing unacknowledged.
    async def all_acknowledged() -> bool:
        return device.figures().unacked_frames == 0

    await wirelet.wait_for("the device to have all output acknowledged", all_acknowledged)
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "flood")
    lines = logs.split("\n")
    assert lines[-1] == ""
    expected = [f"{k:015d}" for k in range(FLOOD_LINES)]
    if lines[:-1] != expected:
        seen = lines[:-1]
        first_bad = next(
            (i for i, (a, b) in enumerate(zip(seen, expected, strict=False)) if a != b),
            min(len(seen), len(expected)),
        )
        raise AssertionError(
            f"{len(seen)} lines, expected {FLOOD_LINES}; first difference at line {first_bad}: "
            f"{seen[first_bad - 2 : first_bad + 3]}"
        )


async def test_a_task_lost_in_a_reboot_while_the_gateway_was_down_is_not_started_again(
    external: tuple[Wirelet, GatewayProcess],
) -> None:
    """The gateway dies right after starting a task (before it wrote any status), the device
    reboots while no gateway listens: its task list is empty, yet the task id was used. The
    new gateway must not start that id again (the device would run it a second time): the
    instance ran and was lost, and the restart policy says what follows."""
    wirelet, process = external
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    created = await wirelet.create_pod("rebooted", "counter", ["30", "20"], node=node)
    task_id = f"{created['metadata']['uid']}/0/0"

    # Killed as soon as the device took the START: before any status says the container ran.
    async with asyncio.timeout(60):
        while device.starts[task_id] < 1:  # noqa: ASYNC110 (the emulator signals no starts)
            await asyncio.sleep(0.002)
    await process.kill()
    device.reboot()
    await process.start()
    pod = await wirelet.wait_pod_phase("rebooted", "Succeeded", "Failed")
    assert device.starts[task_id] == 1, "the restarted gateway started a used task id again"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Lost", 137), terminated
