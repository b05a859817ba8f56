"""Pod status as the kubelet reports it, computed from the runtime's container records.

Pure functions: the phase rules follow the kubelet's getPhase, the conditions its
generateAPIPodStatus, so `kubectl get pods` and `kubectl describe` read as they do for any node.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.runtime.model import (
    ContainerPhase,
    ContainerState,
    ContainerStatus,
    RestartPolicy,
)

CONTAINER_ID_SCHEME = "wirelet://"


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_phase(restart_policy: RestartPolicy, containers: Sequence[ContainerStatus]) -> str:
    """The kubelet's phase rule: waiting keeps a pod Pending; all-stopped depends on the policy."""
    waiting = running = stopped = succeeded = 0
    for status in containers:
        phase = status.state.phase
        if phase is ContainerPhase.RUNNING:
            running += 1
        elif phase is ContainerPhase.TERMINATED:
            stopped += 1
            if status.state.exit_code == 0:
                succeeded += 1
        elif status.last_state is not None and status.last_state.phase is ContainerPhase.TERMINATED:
            stopped += 1  # waiting to restart after a termination: it has run
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy is RestartPolicy.ALWAYS:
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy is RestartPolicy.NEVER:
            return "Failed"
        return "Running"  # OnFailure: the failed ones will be restarted
    return "Pending"


def _state_json(state: ContainerState) -> dict[str, Any]:
    if state.phase is ContainerPhase.WAITING:
        waiting: dict[str, Any] = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if state.phase is ContainerPhase.RUNNING:
        return {"running": {"startedAt": rfc3339(state.started_at)}}
    terminated: dict[str, Any] = {
        "exitCode": state.exit_code if state.exit_code is not None else 0,
        "reason": state.reason or ("Completed" if state.exit_code == 0 else "Error"),
        "startedAt": rfc3339(state.started_at),
        "finishedAt": rfc3339(state.finished_at),
    }
    if state.message:
        terminated["message"] = state.message
    if state.task_id:
        terminated["containerID"] = f"{CONTAINER_ID_SCHEME}{state.task_id}"
    return {"terminated": terminated}


def container_status_json(status: ContainerStatus) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": status.name,
        "image": status.image,
        "imageID": f"{CONTAINER_ID_SCHEME}app/{status.image}",
        "ready": status.ready,
        "restartCount": status.restart_count,
        "started": status.running,
        "state": _state_json(status.state),
        "lastState": _state_json(status.last_state) if status.last_state else {},
    }
    container_id = status.container_id
    if container_id:
        body["containerID"] = f"{CONTAINER_ID_SCHEME}{container_id}"
    return body


def _condition(kind: str, ok: bool, now: datetime, reason: str = "", message: str = "") -> Any:
    cond: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": rfc3339(now),
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_status(
    *,
    restart_policy: RestartPolicy,
    containers: Sequence[ContainerStatus],
    host_ip: str,
    start_time: datetime,
    now: datetime,
    node_ready: bool,
    previous: dict[str, Any] | None = None,
    failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The full `status` body; `previous` keeps condition transition times that did not change.

    `failure` (reason, message) marks a pod that can never run (phase Failed, as the kubelet
    reports a pod it rejected). Ephemeral containers (`kubectl debug`) are reported apart and,
    as with the kubelet, count for neither phase nor readiness."""
    regular = [c for c in containers if not c.ephemeral]
    ephemeral = [c for c in containers if c.ephemeral]
    containers = regular
    phase = "Failed" if failure else pod_phase(restart_policy, containers)
    terminal = phase in ("Succeeded", "Failed")
    unready = [c.name for c in containers if not c.ready]
    containers_ready = not unready and not terminal
    if terminal:
        reason, message = "PodCompleted", ""
    elif unready:
        reason, message = (
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    else:
        reason, message = "", ""
    ready = containers_ready and node_ready
    ready_reason, ready_message = reason, message
    if not node_ready and not terminal:
        # The device is gone: say so, whatever the containers last were. (The node lifecycle
        # controller only flips Ready to False; the reason names the cause, as documented.)
        ready_reason, ready_message = "NodeNotReady", "the device behind this node is not connected"
    conditions = [
        _condition("PodReadyToStartContainers", not terminal, now),
        _condition("Initialized", True, now, "PodCompleted" if terminal else ""),
        _condition("Ready", ready, now, ready_reason, ready_message),
        _condition("ContainersReady", containers_ready, now, reason, message),
        _condition("PodScheduled", True, now),
    ]
    _keep_transition_times(conditions, previous)
    body: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": rfc3339(start_time),
        # No qosClass: the API server sets it from the requests when the pod is created and
        # refuses (422) any other value, so the merge patch leaves it as it is.
        "containerStatuses": [container_status_json(c) for c in containers],
    }
    if ephemeral:
        body["ephemeralContainerStatuses"] = [container_status_json(c) for c in ephemeral]
    if failure:
        body["reason"], body["message"] = failure
    return body


def _keep_transition_times(conditions: list[Any], previous: dict[str, Any] | None) -> None:
    """A condition's lastTransitionTime changes only when its status does."""
    if not previous:
        return
    old = {c.get("type"): c for c in previous.get("conditions") or []}
    for cond in conditions:
        before = old.get(cond["type"])
        if before and before.get("status") == cond["status"] and before.get("lastTransitionTime"):
            cond["lastTransitionTime"] = before["lastTransitionTime"]


def failed_admission_status(reason: str, message: str, host_ip: str, now: datetime) -> Any:
    """What the kubelet writes when its admission rejects a pod: Failed with reason and message."""
    return {
        "phase": "Failed",
        "reason": reason,
        "message": message,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": rfc3339(now),
        "conditions": [],
    }
