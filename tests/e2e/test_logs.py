"""Logs end to end: any valid pod name gets a log, and logs go once their pod is gone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.logs.layout import pod_dir_name

from .conftest import Wirelet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# The longest valid pod name: a 253-byte DNS subdomain. With the namespace and uid the
# kubelet's `<ns>_<pod>_<uid>` would be ~300 bytes, past the 255 a file name may have.
LONG_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


def log_dirs(wirelet: Wirelet) -> list[str]:
    root = Path(wirelet.config.logs.dir)
    return sorted(n for n in os.listdir(root) if not n.startswith(".")) if root.exists() else []


async def test_a_253_character_pod_name_runs_and_logs_and_blocks_nobody(wirelet: Wirelet) -> None:
    assert len(LONG_NAME) == 253
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod(LONG_NAME, "counter", ["30", "20"], node=node)
    await wirelet.create_pod("neighbour", "counter", ["5", "20"], node=node)

    for name, count in ((LONG_NAME, 30), ("neighbour", 5)):
        pod = await wirelet.wait_pod_phase(name, "Succeeded", "Failed")
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
        logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, name)
        assert logs.split() == [str(i) for i in range(1, count + 1)]
    long_pod = await wirelet.pod(LONG_NAME)
    assert long_pod is not None
    uid = long_pod["metadata"]["uid"]
    (directory,) = [d for d in log_dirs(wirelet) if d.endswith(uid)]
    assert directory == pod_dir_name(wirelet.namespace, LONG_NAME, uid)
    assert len(directory) <= 255
    reasons = {e["reason"] for e in await wirelet.events_for(LONG_NAME)}
    assert "Started" in reasons and "LogWriteFailed" not in reasons  # events work for it too


async def test_logs_stay_while_the_pod_exists_and_go_with_it(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[1]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    kept = await wirelet.create_pod("kept", "counter", ["2", "10"], node=node)
    deleted = await wirelet.create_pod("deleted", "counter", ["2", "10"], node=node)
    while_down = await wirelet.create_pod("while-down", "counter", ["2", "10"], node=node)
    for name in ("kept", "deleted", "while-down"):
        await wirelet.wait_pod_phase(name, "Succeeded")

    def has_logs(pod: dict[str, object]) -> bool:
        uid = pod["metadata"]["uid"]  # type: ignore[index]
        return any(d.endswith(f"_{uid}") for d in log_dirs(wirelet))

    assert has_logs(kept) and has_logs(deleted) and has_logs(while_down)  # finished, still there

    await wirelet.api.delete(
        f"/api/v1/namespaces/{wirelet.namespace}/pods/deleted", {"gracePeriodSeconds": 0}
    )

    async def deleted_logs_gone() -> bool:
        return not has_logs(deleted)

    await wirelet.wait_for("the deleted pod's logs to be removed", deleted_logs_gone)
    assert has_logs(kept) and has_logs(while_down)

    # Deleted while no gateway runs: removed once the next one has listed the pods.
    await wirelet.gateway.stop()
    await wirelet.api.delete(
        f"/api/v1/namespaces/{wirelet.namespace}/pods/while-down", {"gracePeriodSeconds": 0}
    )
    assert has_logs(while_down)
    async with Gateway(wirelet.config):

        async def while_down_logs_gone() -> bool:
            return not has_logs(while_down)

        await wirelet.wait_for("logs of a pod deleted while down to go", while_down_logs_gone)
        assert has_logs(kept)
        logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "kept")
        assert logs.split() == ["1", "2"]


async def test_logs_of_a_container_that_never_started_say_why_as_the_kubelet_does(
    wirelet: Wirelet,
) -> None:
    """The kubelet refuses logs of a container with no instance yet (400, naming the waiting
    reason) instead of answering an empty log, and `kubectl logs -f` ends at once with it."""
    await wirelet.create_pod("unpulled", "no-such-app", restart="Always")
    await wirelet.create_pod("huge", "echo", ["x" * 1000], restart="Never")

    def waiting_for(reason: str) -> Any:
        return lambda c: c["state"].get("waiting", {}).get("reason") == reason

    await wirelet.wait_container("unpulled", waiting_for("ImagePullBackOff"))
    out = await wirelet.kubectl("logs", "-n", wirelet.namespace, "unpulled", check=False)
    # ErrImagePull and ImagePullBackOff alternate (each attempt, then its back-off).
    assert 'container "main" in pod "unpulled" is waiting to start: ' in out, out
    assert "image can't be pulled" in out or "trying and failing to pull image" in out, out
    out = await wirelet.kubectl("logs", "-f", "-n", wirelet.namespace, "unpulled", check=False)
    assert "is waiting to start" in out, out

    await wirelet.wait_pod_phase("huge", "Failed")  # StartError: it never ran
    out = await wirelet.kubectl("logs", "-n", wirelet.namespace, "huge", check=False)
    assert 'container "main" in pod "huge" is terminated' in out, out


def open_log_files(root: Path) -> list[str]:
    """Pod log files this process holds open (a deleted one ends in ' (deleted)'); not the
    devices' firmware logs or the spool, beside them."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith(f"{root}/") and not target[len(str(root)) + 1 :].startswith("."):
            held.append(target)
    return held


async def test_logs_of_tasks_that_ended_while_the_gateway_was_down_are_closed_with_their_pod(
    wirelet: Wirelet,
) -> None:
    """Output a device re-sends for tasks that ended while no gateway listened goes to their
    logs; those files stayed open as long as the gateway ran, even once their pods were gone
    and the files deleted (the disk space and one descriptor each kept, per restart)."""
    device = wirelet.fleet.devices[2]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    names = ["away-0", "away-1"]
    for name in names:
        await wirelet.create_pod(name, "counter", ["15", "100"], node=node)
    for name in names:
        await wirelet.wait_container(name, lambda c: "running" in c["state"])
    await wirelet.gateway.stop()

    async def ended_on_device() -> bool:
        return not device.running_task_ids()

    await wirelet.wait_for("the tasks to end while no gateway runs", ended_on_device)
    root = Path(wirelet.config.logs.dir)
    async with Gateway(wirelet.config):
        for name in names:
            await wirelet.wait_pod_phase(name, "Succeeded")

        async def logs_complete() -> bool:
            for name in names:
                logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, name)
                if logs.split() != [str(i) for i in range(1, 16)]:
                    return False
            return True

        await wirelet.wait_for("the logs to hold all the re-sent output", logs_complete)
        for name in names:
            await wirelet.api.delete(
                f"/api/v1/namespaces/{wirelet.namespace}/pods/{name}", {"gracePeriodSeconds": 0}
            )

        async def none_held() -> bool:
            return not open_log_files(root) and not [d for d in log_dirs(wirelet)]

        await wirelet.wait_for("the deleted pods' log files to be closed", none_held)
