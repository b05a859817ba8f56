"""Pod phase and conditions follow the kubelet's rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.kube.pod_status import container_status_json, pod_phase, pod_status
from gateway.runtime.model import ContainerPhase, ContainerState, ContainerStatus, RestartPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def running() -> ContainerStatus:
    return ContainerStatus(
        "c", "counter", ContainerState(ContainerPhase.RUNNING, started_at=T0), ready=True
    )


def exited(code: int) -> ContainerStatus:
    state = ContainerState(ContainerPhase.TERMINATED, exit_code=code, started_at=T0, finished_at=T0)
    return ContainerStatus("c", "exit", state)


def crashlooping() -> ContainerStatus:
    status = ContainerStatus("c", "exit", ContainerState.waiting("CrashLoopBackOff", "back-off"))
    status.last_state = exited(1).state
    status.restart_count = 1
    return status


@pytest.mark.parametrize(
    ("policy", "containers", "phase"),
    [
        (RestartPolicy.ALWAYS, [ContainerStatus("c", "echo")], "Pending"),
        (RestartPolicy.ALWAYS, [running()], "Running"),
        (RestartPolicy.NEVER, [exited(0)], "Succeeded"),
        (RestartPolicy.NEVER, [exited(3)], "Failed"),
        (RestartPolicy.ON_FAILURE, [exited(0)], "Succeeded"),
        (RestartPolicy.ON_FAILURE, [exited(3)], "Running"),
        (RestartPolicy.ALWAYS, [exited(0)], "Running"),
        (RestartPolicy.ALWAYS, [crashlooping()], "Running"),
        (RestartPolicy.NEVER, [running(), exited(0)], "Running"),
        (RestartPolicy.NEVER, [exited(0), exited(2)], "Failed"),
    ],
)
def test_phase_rules(policy: RestartPolicy, containers: list[ContainerStatus], phase: str) -> None:
    assert pod_phase(policy, containers) == phase


def test_status_body_for_a_running_pod() -> None:
    body = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[running()],
        host_ip="10.1.2.3",
        start_time=T0,
        now=T0,
        node_ready=True,
    )
    assert body["phase"] == "Running"
    conds = {c["type"]: c for c in body["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["ContainersReady"]["status"] == "True"
    assert body["podIP"] == "10.1.2.3"
    assert body["containerStatuses"][0]["state"] == {
        "running": {"startedAt": "2026-01-01T00:00:00Z"}
    }


def test_node_not_ready_makes_pod_unready_with_reason() -> None:
    body = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[running()],
        host_ip="10.1.2.3",
        start_time=T0,
        now=T0,
        node_ready=False,
    )
    ready = next(c for c in body["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "NodeNotReady"


def test_transition_time_kept_while_status_unchanged() -> None:
    later = datetime(2026, 1, 2, tzinfo=UTC)
    first = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[running()],
        host_ip="h",
        start_time=T0,
        now=T0,
        node_ready=True,
    )
    second = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[running()],
        host_ip="h",
        start_time=T0,
        now=later,
        node_ready=False,
        previous=first,
    )
    conds = {c["type"]: c for c in second["conditions"]}
    assert conds["PodScheduled"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conds["Ready"]["lastTransitionTime"] == "2026-01-02T00:00:00Z"


def test_terminated_container_json_has_exit_code_and_reason() -> None:
    body = container_status_json(exited(3))
    assert body["state"]["terminated"]["exitCode"] == 3
    assert body["state"]["terminated"]["reason"] == "Error"
    assert container_status_json(exited(0))["state"]["terminated"]["reason"] == "Completed"
    waiting = container_status_json(crashlooping())
    assert waiting["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert waiting["lastState"]["terminated"]["exitCode"] == 1


def test_device_gone_ready_reason_is_node_not_ready_though_containers_are_unready() -> None:
    # The runtime marks containers unready when the link drops; the reason still names the
    # node, as the README says, not the containers.
    status = running()
    status.ready = False
    body = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[status],
        host_ip="h",
        start_time=T0,
        now=T0,
        node_ready=False,
    )
    conds = {c["type"]: c for c in body["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "NodeNotReady")
    assert conds["ContainersReady"]["reason"] == "ContainersNotReady"


def test_container_id_names_the_task_while_running_and_after_it_ended() -> None:
    live = running()
    live.task_id = "uid/0/0"
    assert container_status_json(live)["containerID"] == "wirelet://uid/0/0"
    ended = ContainerStatus(
        "c",
        "exit",
        ContainerState(ContainerPhase.TERMINATED, exit_code=1, task_id="uid/0/0"),
    )
    body = container_status_json(ended)
    assert body["containerID"] == "wirelet://uid/0/0"
    assert body["state"]["terminated"]["containerID"] == "wirelet://uid/0/0"
    waiting = crashlooping()
    waiting.last_state = ended.state
    body = container_status_json(waiting)
    assert "containerID" not in body  # waiting for its next task
    assert body["lastState"]["terminated"]["containerID"] == "wirelet://uid/0/0"


def test_ephemeral_containers_reported_apart_and_not_counted() -> None:
    debug = ContainerStatus("debugger", "echo", ContainerState.waiting("ErrImagePull", "no"))
    debug.ephemeral = True
    body = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[running(), debug],
        host_ip="h",
        start_time=T0,
        now=T0,
        node_ready=True,
    )
    assert body["phase"] == "Running"
    assert [c["name"] for c in body["containerStatuses"]] == ["c"]
    assert [c["name"] for c in body["ephemeralContainerStatuses"]] == ["debugger"]
    assert next(c for c in body["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_a_pod_that_can_never_run_is_failed_with_reason_and_message() -> None:
    body = pod_status(
        restart_policy=RestartPolicy.ALWAYS,
        containers=[running()],
        host_ip="h",
        start_time=T0,
        now=T0,
        node_ready=True,
        failure=("StartError", "container c cannot run on this device: too large"),
    )
    assert body["phase"] == "Failed"
    assert body["reason"] == "StartError"
    assert "too large" in body["message"]
