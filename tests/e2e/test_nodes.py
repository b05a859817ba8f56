"""Node names, labels and ownership against the real control plane.

A device id of 64 bytes (the protocol's limit) still gives a Ready node with valid labels; an
object the API server refuses is sent a bounded number of times; two gateways with a device of
the same id never serve one node together, and the second takes over once the owner's lease
has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware_protocol import StartTask
from gateway.app import Gateway
from gateway.config import NodeConfig, node_name_for
from gateway.device_node import DeviceNode
from gateway.kube.api import KubeApi, KubeApiError
from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.node_agent import NodeAgent
from gateway.kube.node_lease import LEASE_NAMESPACE
from gateway.kube.node_object import NodeFacts
from gateway.names import is_label_value
from hil.cluster.local import LocalCluster
from hil.emulator.device_link import point_device_link
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from tests.e2e.conftest import WAIT, Wirelet, _admin_configuration, _delete_nodes, gateway_config
from tests.gateway.fakes import until

pytestmark = pytest.mark.integration

OWNER = "wirelet.io/owner"


@contextlib.asynccontextmanager
async def gateway_with_device(
    cluster: LocalCluster, api: KubeApi, workdir: Path, device_id: str, **config: Any
) -> AsyncIterator[Wirelet]:
    """One emulated device with `device_id` and a gateway serving it (not cleaned up: the
    caller deletes the node once every gateway that may serve it has stopped)."""
    device_dir = workdir / "devices"
    device_dir.mkdir(parents=True)
    cfg = gateway_config(cluster, device_dir, workdir, **config)
    async with EmulatedFleet(device_dir, [DeviceProfile(device_id=device_id)]) as fleet:
        gateway = Gateway(cfg)
        async with gateway:
            yield Wirelet(cluster, fleet, gateway, api, "default", device_dir, cfg)


async def node_events(api: KubeApi, node: str, reason: str) -> list[dict[str, Any]]:
    listing = await api.get(
        "/api/v1/namespaces/default/events",
        fieldSelector=f"involvedObject.name={node},reason={reason}",
    )
    return list(listing.get("items") or [])


async def test_64_byte_device_id_gives_a_ready_node_with_valid_labels(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    device_id = "EMU:" + "A" * 56 + "_x.Z"  # 64 bytes: upper case and characters to clean
    assert len(device_id.encode()) == 64
    async with KubeApi(await _admin_configuration(cluster)) as api:
        name = node_name_for(NodeConfig(), device_id)
        try:
            async with gateway_with_device(cluster, api, tmp_path, device_id) as env:
                await env.wait_node(name)
                node = await api.get(f"/api/v1/nodes/{name}")
        finally:
            await _delete_nodes(api, [name])
    labels = node["metadata"]["labels"]
    assert len(name) <= 63
    assert labels["kubernetes.io/hostname"] == name
    assert all(is_label_value(value) for value in labels.values()), labels
    assert node["metadata"]["annotations"]["wirelet.io/device-id"] == device_id
    assert node["status"]["nodeInfo"]["bootID"]  # the device's boot id, not empty


def bare_facts(device_id: str) -> NodeFacts:
    """A device's facts with nothing but its id and one task slot."""
    return NodeFacts(
        device_id=device_id,
        vendor="",
        product="",
        serial="",
        firmware_name="fw",
        firmware_version="1",
        transport="serial",
        task_slots=1,
        memory_bytes=1024,
        apps=(),
    )


async def test_a_node_the_api_server_refuses_is_not_sent_again(cluster: LocalCluster) -> None:
    """422 (an invalid name) ends the agent after a bounded number of calls: no loop, no Lease."""
    facts = bare_facts("x")
    config = NodeConfig(lease_renew_interval_s=0.05, status_interval_s=0.05)
    async with KubeApi(await _admin_configuration(cluster)) as api:
        agent = NodeAgent(
            api, "Not_A_Valid_Node", facts, config, node_ip="127.0.0.1", kubelet_port=1
        )
        agent.set_link(True, "KubeletReady", "up")
        await asyncio.wait_for(agent.run(), WAIT)  # returns: it gave up
        assert agent.failed is not None and "422" in agent.failed
        assert api.requests <= 3  # GET (404), POST (422); nothing after
        with pytest.raises(KubeApiError) as exc:
            await api.get(
                f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/Not_A_Valid_Node"
            )
        assert exc.value.not_found


async def test_a_lease_changed_under_the_renewal_is_re_read_and_renewed_at_once(
    cluster: LocalCluster,
) -> None:
    """A 409 on the renewal (someone else wrote the Lease since ours) re-reads it and renews in
    the same round, as the kubelet's lease controller: not one interval later."""
    name = "lease-conflict"
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{name}"
    async with KubeApi(await _admin_configuration(cluster)) as api:
        agent = NodeAgent(
            api, name, bare_facts("conflict"), NodeConfig(), node_ip="127.0.0.1", kubelet_port=1
        )
        try:
            await agent.renew_lease()  # creates it
            await agent.renew_lease()  # renews with the version it holds
            before = (await api.get(lease_path))["spec"]["renewTime"]
            # Another writer (an operator's label, another controller) moves the version on.
            await api.patch(lease_path, {"metadata": {"labels": {"touched": "yes"}}}, kind="merge")
            await asyncio.sleep(0.01)  # a renewTime of its own (microseconds)
            await agent.renew_lease()
            lease = await api.get(lease_path)
            assert lease["spec"]["renewTime"] > before
            assert agent.lease.renewals == 3
            assert agent.lease.conflicts == 1
            assert lease["spec"]["holderIdentity"] == agent.owner
            assert lease["metadata"]["labels"] == {"touched": "yes"}
        finally:
            with contextlib.suppress(KubeApiError):
                await api.delete(lease_path)


async def test_status_reposts_after_a_change_are_spread_unchanged_ones_keep_the_interval(
    cluster: LocalCluster,
) -> None:
    """Nodes whose status changed together must not re-post it together every interval from
    then on: after a write for a change the next re-post waits a random half to whole interval
    (here the draw is fixed: half), after an unchanged re-post the whole interval."""
    facts = bare_facts("spread")
    interval = 4.0
    config = NodeConfig(status_interval_s=interval)
    name = "status-spread"
    async with KubeApi(await _admin_configuration(cluster)) as api:
        agent = NodeAgent(
            api, name, facts, config, node_ip="127.0.0.1", kubelet_port=1, draw=lambda: 0.0
        )
        agent.set_link(True, "KubeletReady", "up")
        runner = asyncio.create_task(agent.run())
        try:
            await until("the first status write", lambda: agent.status_writes >= 1)
            assert agent.status_written_at is not None
            assert agent.status_due - agent.status_written_at == pytest.approx(interval / 2)
            agent.set_link(False, "DeviceDisconnected", "unplugged")  # a change: written now
            await until("the status write of the change", lambda: agent.status_writes >= 2)
            assert agent.status_due - agent.status_written_at == pytest.approx(interval / 2)
            # Nothing changes from here: the re-post half an interval on is an unchanged one.
            await until("the unchanged re-post", lambda: agent.status_writes >= 3)
            assert agent.status_due - agent.status_written_at == pytest.approx(interval)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await _delete_nodes(api, [name])


def serving(node: DeviceNode) -> bool:
    return node.served


async def refused(env: Wirelet, owner: str) -> bool:
    """The gateway's one device waits for `owner`'s lease instead of serving."""
    nodes = list(env.gateway.nodes.values())
    return bool(nodes and nodes[0].agent and nodes[0].agent.ownership.refused_by == owner)


SHORT_LEASE = {"lease_duration_s": 2, "lease_renew_interval_s": 0.5, "status_interval_s": 5.0}


async def test_two_gateways_one_device_id_one_owner_then_takeover(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    device_id = "twin-0001"
    name = node_name_for(NodeConfig(), device_id)
    async with KubeApi(await _admin_configuration(cluster)) as api:
        try:
            async with contextlib.AsyncExitStack() as first:
                owner = await first.enter_async_context(
                    gateway_with_device(
                        cluster,
                        api,
                        tmp_path / "a",
                        device_id,
                        gateway={"identity": "gw-a"},
                        nodes=SHORT_LEASE,
                    )
                )
                await owner.wait_node(name)
                async with gateway_with_device(
                    cluster,
                    api,
                    tmp_path / "b",
                    device_id,
                    gateway={"identity": "gw-b"},
                    nodes=SHORT_LEASE,
                ) as second:
                    # The second gateway refuses, says why (naming both), and serves nothing.
                    refused = await second.wait_for(
                        "NodeOwnedElsewhere event",
                        lambda: node_events(api, name, "NodeOwnedElsewhere"),
                    )
                    assert "gw-a" in refused[0]["message"] and "gw-b" in refused[0]["message"]
                    (b_node,) = second.gateway.nodes.values()
                    assert b_node.agent is not None and b_node.agent.ownership.refused_by == "gw-a"
                    assert not serving(b_node) and b_node.runtime is None
                    node = await api.get(f"/api/v1/nodes/{name}")
                    assert node["metadata"]["annotations"][OWNER] == "gw-a"
                    assert await second.node_ready(name) == "True"

                    # The owner goes away without a word (its lease stops being renewed).
                    await first.aclose()

                    async def taken_over() -> bool:
                        node = await api.get(f"/api/v1/nodes/{name}")
                        return bool(node["metadata"]["annotations"][OWNER] == "gw-b")

                    await second.wait_for("takeover by gw-b", taken_over)
                    await second.wait_node(name)
                    assert serving(b_node)
                    lease_path = (
                        f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{name}"
                    )

                    async def lease_held_by_b() -> bool:
                        lease = await api.get(lease_path)
                        return bool(lease["spec"]["holderIdentity"] == "gw-b")

                    await second.wait_for("the lease renewed by gw-b", lease_held_by_b)
                    assert await node_events(api, name, "NodeTakenOver")
        finally:
            await _delete_nodes(api, [name])


async def test_event_for_an_object_with_a_253_character_name_is_written(
    cluster: LocalCluster,
) -> None:
    long_name = "p" * 253
    async with KubeApi(await _admin_configuration(cluster)) as api:
        recorder = EventRecorder(api, "test-host")
        recorder.record(ObjectRef("Pod", "default", long_name, "uid-1"), "Normal", "Test", "hi")
        await recorder.drain()
        listing = await api.get(
            "/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.name={long_name}"
        )
        (event,) = listing["items"]
        assert len(event["metadata"]["name"]) <= 253
        await api.delete(f"/api/v1/namespaces/default/events/{event['metadata']['name']}")


async def test_an_object_gets_25_events_then_one_per_5_minutes_as_the_kubelets(
    cluster: LocalCluster,
) -> None:
    """client-go's spam filter: a device rebooting in a loop (a new message each time) or a
    crash-looping pod cannot spend the API budget every node shares on its events."""
    async with KubeApi(await _admin_configuration(cluster)) as api:
        recorder = EventRecorder(api, "test-host")
        flapping = ObjectRef("Node", "", "spam-node", "spam-node")
        quiet = ObjectRef("Node", "", "quiet-node", "quiet-node")
        for boot in range(100):
            recorder.record(flapping, "Warning", "Rebooted", f"rebooted, boot id {boot}")
        recorder.record(flapping, "Normal", "NodeReady", "another type has its own bucket")
        recorder.record(quiet, "Warning", "Rebooted", "rebooted, boot id 1")
        await recorder.drain()
        try:
            for name, expected in (("spam-node", 26), ("quiet-node", 1)):
                listing = await api.get(
                    "/api/v1/namespaces/default/events",
                    fieldSelector=f"involvedObject.name={name}",
                )
                assert len(listing["items"]) == expected
            assert recorder.spam.filtered == 75
        finally:
            for name in ("spam-node", "quiet-node"):
                listing = await api.get(
                    "/api/v1/namespaces/default/events",
                    fieldSelector=f"involvedObject.name={name}",
                )
                for event in listing["items"]:
                    await api.delete(
                        f"/api/v1/namespaces/default/events/{event['metadata']['name']}"
                    )


async def test_owner_whose_device_was_gone_past_its_lease_does_not_take_the_node_back(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A's device is unplugged long enough for its lease to expire: B takes the node. When A's
    device comes back, A finds B's live lease, refuses, and never writes over B's status."""
    device_id = "twin-0002"
    name = node_name_for(NodeConfig(), device_id)
    async with KubeApi(await _admin_configuration(cluster)) as api:
        try:
            async with (
                gateway_with_device(
                    cluster,
                    api,
                    tmp_path / "a",
                    device_id,
                    gateway={"identity": "gw-a"},
                    nodes=SHORT_LEASE,
                ) as first,
            ):
                await first.wait_node(name)
                async with gateway_with_device(
                    cluster,
                    api,
                    tmp_path / "b",
                    device_id,
                    gateway={"identity": "gw-b"},
                    nodes=SHORT_LEASE,
                ) as second:
                    await second.wait_for("gw-b refused", lambda: refused(second, "gw-a"))
                    (a_node,) = first.gateway.nodes.values()
                    (b_node,) = second.gateway.nodes.values()
                    first.fleet.devices[0].unplug()

                    async def owner_is(who: str) -> bool:
                        node = await api.get(f"/api/v1/nodes/{name}")
                        return bool(node["metadata"]["annotations"][OWNER] == who)

                    await second.wait_for("takeover by gw-b", lambda: owner_is("gw-b"))
                    await second.wait_node(name)
                    first.fleet.devices[0].plug()
                    await first.wait_for("gw-a refused", lambda: refused(first, "gw-b"))
                    assert not serving(a_node) and serving(b_node)
                    assert await owner_is("gw-b")
                    assert await second.node_ready(name) == "True"
        finally:
            await _delete_nodes(api, [name])


async def test_another_board_on_the_same_port_is_its_own_node_and_the_first_keeps_its_pods(
    wirelet: Wirelet,
) -> None:
    """A board swapped behind the same USB-serial adapter (same path, another device id): the
    first board's node goes NotReady with its pod waiting for it, nothing of it runs on the
    second board, which gets its own node; the first board back on that path is its node
    again, and its pod (lost in the swap) restarts there."""
    device = wirelet.fleet.devices[0]
    first_id = device.profile.device_id
    first_node, second_node = wirelet.node(first_id), wirelet.node(f"{first_id}-b")
    await wirelet.wait_node(first_node)
    pod = await wirelet.create_pod("stays", "forever", ["1000"], node=first_node, restart="Always")
    uid = pod["metadata"]["uid"]
    await wirelet.wait_container("stays", lambda c: "running" in c["state"])
    wirelet.extra_nodes.append(second_node)
    try:
        device.profile = dataclasses.replace(device.profile, device_id=f"{first_id}-b")
        device.reboot()
        await wirelet.wait_node(second_node, "True")
        await wirelet.wait_node(first_node, "False")
        node = await wirelet.api.get(f"/api/v1/nodes/{first_node}")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "DeviceReplaced" and f"{first_id}-b" in ready["message"]
        await wirelet.create_pod("second", "echo", ["hi"], node=second_node)
        await wirelet.wait_pod_phase("second", "Succeeded")
        started = [m.task_id for m in device.received if isinstance(m, StartTask)]
        assert sum(task_id.startswith(uid) for task_id in started) == 1, started
        waiting = await wirelet.pod("stays")
        assert waiting is not None and waiting["spec"]["nodeName"] == first_node
        assert waiting["status"]["containerStatuses"][0]["ready"] is False

        device.profile = dataclasses.replace(device.profile, device_id=first_id)
        device.reboot()
        await wirelet.wait_node(first_node, "True")
        await wirelet.wait_node(second_node, "False")
        back = await wirelet.wait_container(
            "stays", lambda c: c["restartCount"] >= 1 and "running" in c["state"]
        )
        assert back["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == (
            "Lost"
        )
    finally:
        device.profile = dataclasses.replace(device.profile, device_id=first_id)


async def test_a_board_moved_to_another_port_while_away_is_its_node_again_with_its_pod(
    wirelet: Wirelet,
) -> None:
    """Unplugged from one port and plugged into another (a new path, as by-path names or an
    explicit tty give): the node is served from the new path, and the pod whose task kept
    running on the board is adopted there, not restarted."""
    device = wirelet.fleet.devices[0]
    device_id = device.profile.device_id
    node = wirelet.node(device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("mover", "counter", ["100000", "50"], node=node, restart="Always")
    await wirelet.wait_container("mover", lambda c: "running" in c["state"])
    device.unplug()
    await wirelet.wait_node(node, "False")
    device._on_tty_change = lambda d: point_device_link(
        wirelet.device_dir, f"moved-{device_id}", d.tty
    )
    device.plug()
    await wirelet.wait_node(node, "True")
    before = len((await wirelet.kubectl("logs", "-n", wirelet.namespace, "mover")).split())

    async def more_output() -> bool:
        logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "mover")
        return len(logs.split()) > before + 5

    await wirelet.wait_for("output through the new port", more_output)
    pod = await wirelet.pod("mover")
    assert pod is not None
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0 and "running" in status["state"], status
    started = [m.task_id for m in device.received if isinstance(m, StartTask)]
    assert len(started) == 1, started


@pytest.mark.gateway_config(nodes={"memory_pressure_percent": 10, "pressure_transition_s": 2.0})
async def test_a_device_short_of_memory_is_under_memory_pressure_and_tainted_noschedule(
    wirelet: Wirelet,
) -> None:
    """As the kubelet's eviction manager: MemoryPressure while the device reports less than 10%
    free (the node lifecycle controller then taints it NoSchedule), back to False once none was
    seen for the transition period; the other nodes are untouched."""
    device, other = wirelet.fleet.devices[0], wirelet.fleet.devices[1]
    node, other_node = wirelet.node(device.profile.device_id), wirelet.node(other.profile.device_id)
    for name in (node, other_node):
        await wirelet.wait_node(name)

    async def memory(name: str) -> dict[str, Any]:
        got = await wirelet.api.get(f"/api/v1/nodes/{name}")
        (condition,) = [c for c in got["status"]["conditions"] if c["type"] == "MemoryPressure"]
        return dict(condition)

    async def taints(name: str) -> list[str]:
        got = await wirelet.api.get(f"/api/v1/nodes/{name}")
        return [t["key"] for t in got["spec"].get("taints") or []]

    assert (await memory(node))["status"] == "False"
    device.set_firmware_memory(device.profile.memory_bytes - 4096)  # 4 KiB of 256 free: 1.6%

    async def under_pressure() -> dict[str, Any] | None:
        condition = await memory(node)
        return condition if condition["status"] == "True" else None

    condition = await wirelet.wait_for("MemoryPressure True", under_pressure)
    assert condition["reason"] == "KubeletHasInsufficientMemory"
    assert "4.0 KiB free of 256.0 KiB" in condition["message"]

    async def tainted() -> bool:
        return "node.kubernetes.io/memory-pressure" in await taints(node)

    await wirelet.wait_for("the controller's memory-pressure taint", tainted)
    assert (await memory(other_node))["status"] == "False"
    assert "node.kubernetes.io/memory-pressure" not in await taints(other_node)
    events = await wirelet.api.get(
        "/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.name={node}"
    )
    assert "NodeHasInsufficientMemory" in {e["reason"] for e in events["items"]}

    device.set_firmware_memory(0)

    async def relieved() -> bool:
        return (await memory(node))["status"] == "False" and not await tainted()

    await wirelet.wait_for("MemoryPressure False and the taint gone", relieved)
    assert (await memory(node))["reason"] == "KubeletHasSufficientMemory"
