"""The gateway's end-to-end checks against real firmware on emulated boards (QEMU): the Cortex-M3
(mps2-an385) and the Arduino Mega 2560 (ATmega2560), through the real control plane."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.logs.firmware import FIRMWARE_DIR_NAME, FirmwareLog
from hil.qemu.targets import TARGETS
from tests.e2e.conftest import Wirelet

from .conftest import QemuSetup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _targets(setup: QemuSetup) -> list[str]:
    return sorted(setup.boards.ids)


def first(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][0]  # type: ignore[no-any-return]


async def test_nodes_ready_with_the_boards_facts(qemu_setup: QemuSetup, wirelet: Wirelet) -> None:
    for target, device_id in qemu_setup.boards.ids.items():
        node = wirelet.node(device_id)
        await wirelet.wait_node(node)
        obj = await wirelet.api.get(f"/api/v1/nodes/{node}")
        labels = obj["metadata"]["labels"]
        assert labels["wirelet.io/device-id"] == device_id
        assert labels["wirelet.io/firmware"] == "wirelet-reference"
        assert labels["wirelet.io/transport"] == "serial"
        vendor = {"cortex-m": "ARM", "avr": "Arduino"}[target]
        assert labels["wirelet.io/vendor"] == vendor, (TARGETS[target].description, labels)
        assert int(obj["status"]["capacity"]["pods"]) >= 1
        # The board's RAM, as the firmware reports it (its memory in use is counted against it).
        memory = {"cortex-m": "32Ki", "avr": "8Ki"}[target]
        assert obj["status"]["capacity"]["memory"] == memory


async def test_the_cortex_m_firmwares_log_line_is_in_its_nodes_firmware_log(
    qemu_setup: QemuSetup, wirelet: Wirelet
) -> None:
    """The reference firmware logs a line per boot (wirelet_log, DEVICE_LOG): it reaches the
    node's firmware log, which the node's kubelet API serves under /logs/."""
    device_id = qemu_setup.boards.ids.get("cortex-m")
    if device_id is None:
        pytest.skip("no Cortex-M board in this run")
    node = wirelet.node(device_id)
    await wirelet.wait_node(node)
    log_root = qemu_setup.gateway.config.parent / "pods"  # gateway_settings' log_dir
    log = FirmwareLog(log_root / FIRMWARE_DIR_NAME / node)

    async def logged() -> bool:
        return log.path.is_file() and " INFO [uptime " in log.path.read_text()

    await wirelet.wait_for("the board's log line", logged)
    assert "wirelet-reference " in log.path.read_text() and " up\n" in log.path.read_text()


async def test_pod_runs_to_completion_with_its_exit_code(
    qemu_setup: QemuSetup, wirelet: Wirelet
) -> None:
    for target in _targets(qemu_setup):
        name = f"exit-{target}"
        node = wirelet.node(qemu_setup.boards.ids[target])
        await wirelet.wait_node(node)
        await wirelet.create_pod(name, "exit", ["3", "bye", "from", target], node=node)
        pod = await wirelet.wait_pod_phase(name, "Failed")
        assert first(pod)["state"]["terminated"]["exitCode"] == 3
        logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, name)
        assert logs == f"bye from {target}\n"
        echo = f"echo-{target}"
        env = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
        await wirelet.create_pod(echo, "echo", ["hello", target], node=node, env=env)
        pod = await wirelet.wait_pod_phase(echo, "Succeeded")
        logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, echo)
        assert logs.splitlines()[1:] == ["A=1", "B=2"]
        assert logs.splitlines()[0].endswith(f"hello {target}")


async def test_logs_follow_streams_the_boards_output(
    qemu_setup: QemuSetup, wirelet: Wirelet
) -> None:
    for target in _targets(qemu_setup):
        name = f"ticker-{target}"
        node = wirelet.node(qemu_setup.boards.ids[target])
        await wirelet.create_pod(name, "counter", ["6", "100"], node=node)
        await wirelet.wait_container(
            name, lambda c: "running" in c["state"] or "terminated" in c["state"]
        )
        out = await wirelet.kubectl("logs", "-f", "-n", wirelet.namespace, name)
        assert out.split() == ["1", "2", "3", "4", "5", "6"]


async def test_delete_stops_the_task(qemu_setup: QemuSetup, wirelet: Wirelet) -> None:
    for target in _targets(qemu_setup):
        name = f"endless-{target}"
        node = wirelet.node(qemu_setup.boards.ids[target])
        await wirelet.create_pod(name, "forever", ["50"], node=node)
        await wirelet.wait_container(name, lambda c: "running" in c["state"])
        await wirelet.api.delete(f"/api/v1/namespaces/{wirelet.namespace}/pods/{name}")

        async def gone(name: str = name) -> bool:
            return await wirelet.pod(name) is None

        # the pod object goes only once the board reported the task's exit
        await wirelet.wait_for(f"pod {name} deleted", gone)
        # the slot is free again: a new pod runs on the same board
        await wirelet.create_pod(f"after-{target}", "exit", ["0"], node=node)
        await wirelet.wait_pod_phase(f"after-{target}", "Succeeded")


async def test_board_reset_loses_the_task_and_restart_policy_restarts_it(
    qemu_setup: QemuSetup, wirelet: Wirelet
) -> None:
    for target in _targets(qemu_setup):
        name = f"rebooted-{target}"
        node = wirelet.node(qemu_setup.boards.ids[target])
        await wirelet.wait_node(node)
        await wirelet.create_pod(name, "forever", ["100"], node=node, restart="Always")
        await wirelet.wait_container(name, lambda c: "running" in c["state"])
        await asyncio.to_thread(qemu_setup.boards.ctl, target, "reboot")
        pod = await wirelet.wait_container(
            name, lambda c: c["restartCount"] >= 1 and "running" in c["state"]
        )
        last = first(pod)["lastState"]["terminated"]
        assert last["reason"] == "Lost", (target, last)
        assert "TaskLost" in {e["reason"] for e in await wirelet.events_for(name)}
        await wirelet.api.delete(
            f"/api/v1/namespaces/{wirelet.namespace}/pods/{name}", {"gracePeriodSeconds": 0}
        )


async def test_hang_and_unplug_make_the_node_not_ready_until_the_board_is_back(
    qemu_setup: QemuSetup, wirelet: Wirelet
) -> None:
    # a frozen CPU (QMP stop) on one board, a pulled cable (QEMU process gone) on the other
    faults = dict(
        zip(_targets(qemu_setup), [("hang", "resume"), ("unplug", "replug")], strict=False)
    )
    for target, (fault, cure) in faults.items():
        node = wirelet.node(qemu_setup.boards.ids[target])
        await wirelet.wait_node(node)
        await asyncio.to_thread(qemu_setup.boards.ctl, target, fault)
        await wirelet.wait_node(node, "False")
        await asyncio.to_thread(qemu_setup.boards.ctl, target, cure)
        await wirelet.wait_node(node, "True")


async def test_gateway_sigkill_and_restart_every_line_exactly_once(
    qemu_setup: QemuSetup, wirelet: Wirelet
) -> None:
    names = {}
    nodes = {t: wirelet.node(qemu_setup.boards.ids[t]) for t in _targets(qemu_setup)}
    # Every board Ready before any pod: a board still reconnecting after the previous test's
    # fault must not let the other's counter finish before this test sees it running.
    for node in nodes.values():
        await wirelet.wait_node(node)
    for target, node in nodes.items():
        names[target] = f"survivor-{target}"
        # 40 lines 0.2 s apart: still running when the gateway is killed, on a busy host too.
        await wirelet.create_pod(names[target], "counter", ["40", "200"], node=node)
    # Both at once: a board slow to take its START must not make the test miss the other
    # board's counter while it runs.
    await asyncio.gather(
        *(wirelet.wait_container(n, lambda c: "running" in c["state"]) for n in names.values())
    )
    qemu_setup.gateway.kill()
    await asyncio.sleep(0.5)  # the boards keep printing while no gateway listens
    qemu_setup.gateway.start()
    for target, name in names.items():
        pod = await wirelet.wait_pod_phase(name, "Succeeded", "Failed")
        assert pod["status"]["phase"] == "Succeeded", (target, pod["status"])
        assert first(pod)["restartCount"] == 0
        logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, name)
        assert logs.split() == [str(i) for i in range(1, 41)], (target, logs)
