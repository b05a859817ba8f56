"""Resuming a container from the device's task list after a gateway restart."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.link.events import TaskInfo
from gateway.runtime.backoff import BackoffPolicy, RestartBackoff
from gateway.runtime.model import (
    ContainerPhase,
    ContainerStatus,
    PodSpecView,
    RestartPolicy,
    TaskSpec,
)
from gateway.runtime.records import PodRecord
from gateway.runtime.resume import resume_prior

UID = "0b6f3c2e-8d41-4a7e-9c15-2f7b9e4d6a18"


def test_an_exit_beyond_int32_seen_after_a_restart_is_recorded_as_the_nearest_one() -> None:
    """A task that ended while no gateway listened, with an exit code Kubernetes cannot hold
    (int64 on the wire, int32 in the API): the status would be refused as a whole."""
    spec = PodSpecView(
        uid=UID,
        namespace="ns",
        name="p",
        node_name="n",
        restart_policy=RestartPolicy.NEVER,
        containers=(TaskSpec("main", "exit", "exit", (), ()),),
        prior=((0, None),),
    )
    record = PodRecord(
        spec,
        [ContainerStatus("main", "exit")],
        [RestartBackoff(BackoffPolicy())],
        datetime.now(UTC),
    )
    task_id = f"{UID}/0/0"
    tasks = {task_id: TaskInfo(task_id, "exit", False, 2**40, 0, 0)}

    assert resume_prior(record, 0, tasks, lambda _restart, _state: True)
    state = record.containers[0].state
    assert state.phase is ContainerPhase.TERMINATED
    assert (state.exit_code, state.reason) == (2**31 - 1, "Error")
    assert str(2**40) in state.message
