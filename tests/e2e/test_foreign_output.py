"""A device flooding TASK_OUTPUT for task ids nobody started (issue: the gateway grew to 1.45 GB
in 60 s, 3.16 GB once the device rebooted): dropped and counted, memory bounded, pods served."""

from __future__ import annotations

import pytest

from gateway.link import output_ledger
from gateway.link.session import DeviceSession
from gateway.runtime.output import UNKNOWN_POD_SPOOL_LIMIT
from hil.emulator.faults import Misbehaviour

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_flood_of_output_for_unknown_tasks_keeps_gateway_state_bounded(
    wirelet: Wirelet,
) -> None:
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    for d in wirelet.fleet.devices:
        await wirelet.wait_node(wirelet.node(d.profile.device_id))
    (served,) = [n for n in wirelet.gateway.nodes.values() if n.name == node]
    session = served.session
    assert isinstance(session, DeviceSession)  # a device, not an SSH host

    device.set_misbehaviour(Misbehaviour(foreign_output=True))
    await wirelet.create_pod("honest", "counter", ["3", "50"], node=node)
    pod = await wirelet.wait_pod_phase("honest", "Succeeded")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "honest")
    assert logs.splitlines() == ["1", "2", "3"]

    async def dropped(at_least: int) -> bool:
        return session.stats.dropped_reports >= at_least

    await wirelet.wait_for("3000 dropped reports", lambda: dropped(3000))
    sizes = session.state_sizes()
    assert sizes["tasks"] <= 1 and sizes["trailing"] <= 1, sizes  # the honest pod's task
    assert served.runtime is not None
    assert served.runtime.spooler.unknown_pod_bytes <= UNKNOWN_POD_SPOOL_LIMIT

    # A reboot while flooding: its output before the task list is taken for a bounded number
    # of ids only, then reconciled away; the node comes back.
    before = session.stats.connects
    device.reboot()

    async def relisted() -> bool:
        return session.facts is not None and session.facts.boot_id == device.boot_id

    await wirelet.wait_for("the device re-listed after its reboot", relisted)
    await wirelet.wait_node(node)
    await wirelet.wait_for("more drops after the reboot", lambda: dropped(6000))
    sizes = session.state_sizes()
    assert sizes["tasks"] == 0, sizes
    assert sizes["exited"] <= 256  # ids reconciled away (lost), remembered in a bounded list
    assert session.stats.dropped_reports > output_ledger.MAX_UNLISTED_OUTPUT_TASKS
    assert session.stats.connects >= before
    assert served.runtime.spooler.unknown_pod_bytes <= UNKNOWN_POD_SPOOL_LIMIT
    for other in wirelet.fleet.devices[1:]:
        assert await wirelet.node_ready(wirelet.node(other.profile.device_id)) == "True"
    device.set_misbehaviour(Misbehaviour())
