"""The runtime's pod logic against an in-memory device (tests/gateway/fakes.py): every restart
policy path, back-off, starts the device refuses, adoption and resuming after a gateway restart,
lost tasks, deletes and orphans. Fast: no link, no emulator, no API server."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.errors import DeviceRejected
from gateway.kube.pod_status import pod_phase
from gateway.link.events import TaskInfo
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.model import (
    ContainerPhase,
    ContainerState,
    RestartPolicy,
    TaskSpec,
)
from gateway.runtime.records import LOST_EXIT_CODE, START_ERROR_EXIT_CODE
from tests.gateway.fakes import RuntimeRig, pod_spec, until

Policy = RestartPolicy


async def _running(rig: RuntimeRig, uid: str, index: int = 0, *, after: str = "") -> str:
    """The container's running task, once it runs a task other than `after`."""

    def check() -> bool:
        status = rig.pod(uid).containers[index]
        return status.running and status.task_id != after

    await until("running", check)
    task_id = rig.pod(uid).containers[index].task_id
    assert task_id is not None
    return task_id


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarts", "phase"),
    [
        (Policy.NEVER, 0, False, "Succeeded"),
        (Policy.NEVER, 3, False, "Failed"),
        (Policy.ON_FAILURE, 0, False, "Succeeded"),
        (Policy.ON_FAILURE, 3, True, "Running"),
        (Policy.ALWAYS, 0, True, "Running"),
        (Policy.ALWAYS, 3, True, "Running"),
    ],
)
async def test_restart_policy_decides_whether_an_exited_container_runs_again(
    tmp_path: Path, policy: RestartPolicy, exit_code: int, restarts: bool, phase: str
) -> None:
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=policy)
    rig.runtime.sync_pod(spec)
    first = await _running(rig, spec.uid)
    assert first == f"{spec.uid}/0/0"
    rig.device.exit(first, exit_code)
    if restarts:
        # The first restart is immediate; the new instance gets the next restart number.
        second = await _running(rig, spec.uid, after=first)
        assert second == f"{spec.uid}/0/1"
        status = rig.pod(spec.uid).containers[0]
        assert status.restart_count == 1
        assert status.last_state is not None
        assert (status.last_state.exit_code, status.last_state.task_id) == (exit_code, first)
    else:
        await until(
            "terminated",
            lambda: rig.pod(spec.uid).containers[0].state.phase is ContainerPhase.TERMINATED,
        )
        status = rig.pod(spec.uid).containers[0]
        assert status.state.reason == ("Completed" if exit_code == 0 else "Error")
        assert status.last_state is None  # no restart was ever scheduled
        assert rig.device.starts == [first]
    assert pod_phase(policy, rig.pod(spec.uid).containers) == phase
    await rig.runtime.close()


async def test_a_container_that_keeps_crashing_waits_in_crash_loop_back_off(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path)  # restart back-off: 0 s, then an hour
    spec = pod_spec(policy=Policy.ALWAYS)
    rig.runtime.sync_pod(spec)
    first = await _running(rig, spec.uid)
    rig.device.exit(first, 1)
    rig.device.exit(await _running(rig, spec.uid, after=first), 1)
    await until(
        "back-off",
        lambda: rig.pod(spec.uid).containers[0].state.reason == "CrashLoopBackOff",
    )
    status = rig.pod(spec.uid).containers[0]
    assert "back-off 3600s restarting failed container=c0" in status.state.message
    assert status.last_state is not None and status.last_state.exit_code == 1
    assert len(rig.device.starts) == 2
    assert "BackOff" in rig.reasons()
    await rig.runtime.close()


async def test_an_ephemeral_container_is_never_restarted(tmp_path: Path) -> None:
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=Policy.ALWAYS, ephemeral=1)
    rig.runtime.sync_pod(spec)
    await _running(rig, spec.uid, 0)
    rig.device.exit(await _running(rig, spec.uid, 1), 1)
    await until(
        "debug container ended",
        lambda: rig.pod(spec.uid).containers[1].state.phase is ContainerPhase.TERMINATED,
    )
    debug = rig.pod(spec.uid).containers[1]
    assert debug.ephemeral and debug.last_state is None
    assert rig.pod(spec.uid).containers[0].running
    await rig.runtime.close()


async def test_a_start_the_device_refuses_for_now_is_retried_with_back_off(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path)
    rig.device.start_errors["echo"] = DeviceRejected("no free task slot", code="NO_SLOT")
    spec = pod_spec(policy=Policy.NEVER)
    rig.runtime.sync_pod(spec)
    await until("two attempts", lambda: len(rig.device.starts) == 2)
    await until("back-off", lambda: "back-off" in rig.pod(spec.uid).containers[0].state.message)
    state = rig.pod(spec.uid).containers[0].state
    assert (state.phase, state.reason) == (ContainerPhase.WAITING, "RunContainerError")
    assert "no free task slot" in state.message  # the device's own words
    assert rig.pod(spec.uid).failure is None
    await rig.runtime.close()


async def test_a_pod_with_more_containers_than_task_slots_fails_before_any_start(
    tmp_path: Path,
) -> None:
    """Admission counts containers against the slots; this holds when the device's firmware
    lowered them after the pod was admitted (its handshake's facts)."""
    rig = RuntimeRig.create(tmp_path)
    rig.runtime.device_changed(rig.runtime.apps, rig.runtime.max_frame, task_slots=2)
    spec = pod_spec(policy=Policy.ALWAYS, containers=3)
    rig.runtime.sync_pod(spec)
    await until("the pod failed", lambda: rig.pod(spec.uid).failure is not None)
    state = rig.pod(spec.uid).containers[0].state
    assert (state.reason, state.exit_code) == ("StartError", START_ERROR_EXIT_CODE)
    assert "3 containers" in state.message and "at most 2 tasks at once" in state.message
    assert rig.device.starts == []
    await rig.runtime.close()


async def test_a_start_the_device_can_never_run_fails_the_pod_and_stops_the_rest(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path, apps=("echo", "bad"))
    rig.device.start_errors["bad"] = DeviceRejected("argv malformed", code="MALFORMED")
    spec = pod_spec(policy=Policy.ALWAYS, containers=2)
    bad = TaskSpec("c1", "bad", "bad", (), ())
    spec = dataclasses.replace(spec, containers=(spec.containers[0], bad))
    rig.runtime.sync_pod(spec)
    await until("the pod failed", lambda: rig.pod(spec.uid).failure is not None)
    state = rig.pod(spec.uid).containers[1].state
    assert (state.phase, state.reason, state.exit_code) == (
        ContainerPhase.TERMINATED,
        "StartError",
        START_ERROR_EXIT_CODE,
    )
    # The other container is stopped and, though the policy is Always, not restarted.
    await until(
        "the other stopped",
        lambda: rig.pod(spec.uid).containers[0].state.phase is ContainerPhase.TERMINATED,
    )
    assert [stop[0] for stop in rig.device.stops] == [f"{spec.uid}/0/0"]
    assert rig.pod(spec.uid).containers[0].last_state is None
    assert pod_phase(Policy.ALWAYS, rig.pod(spec.uid).containers) == "Running"  # see pod_status
    await rig.runtime.close()


async def test_an_app_the_device_does_not_offer_waits_as_err_image_pull(tmp_path: Path) -> None:
    rig = RuntimeRig.create(tmp_path, apps=("counter",))
    spec = pod_spec("blink")
    rig.runtime.sync_pod(spec)
    state = rig.pod(spec.uid).containers[0].state
    assert (state.phase, state.reason) == (ContainerPhase.WAITING, "ErrImagePull")
    assert 'app "blink"' in state.message and "counter" in state.message
    assert rig.device.starts == []
    assert "Failed" in rig.reasons()
    await rig.runtime.close()


async def test_a_missing_app_alternates_err_image_pull_and_image_pull_back_off(
    tmp_path: Path,
) -> None:
    """As the kubelet with an image it cannot pull: ErrImagePull, then ImagePullBackOff until
    the next attempt, which fails again; every attempt is a Failed event, every wait a BackOff."""
    rig = RuntimeRig.create(
        tmp_path, apps=("counter",), backoff=BackoffPolicy(initial_s=0.05, max_s=0.1)
    )
    spec = pod_spec("blink")
    rig.runtime.sync_pod(spec)
    seen: list[str] = []

    def reason() -> str:
        return rig.pod(spec.uid).containers[0].state.reason

    def record() -> bool:
        if not seen or seen[-1] != reason():
            seen.append(reason())
        return len(seen) >= 4

    await until("two attempts and two back-offs", record)
    assert seen[:4] == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"]
    assert 'Back-off pulling image "blink"' in rig.pod(spec.uid).containers[0].state.message
    assert rig.reasons().count("Failed") >= 2 and "BackOff" in rig.reasons()
    assert rig.device.starts == []
    assert rig.pod(spec.uid).containers[0].restart_count == 0
    await rig.runtime.close()


async def test_new_firmware_offering_the_app_starts_the_waiting_container_at_once(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path, apps=("counter",))  # back-off of an hour
    spec = pod_spec("blink")
    rig.runtime.sync_pod(spec)
    assert rig.pod(spec.uid).containers[0].state.reason == "ErrImagePull"
    rig.runtime.device_changed(("counter", "blink"), None)
    await _running(rig, spec.uid)
    assert rig.device.starts == [f"{spec.uid}/0/0"]
    await rig.runtime.close()


async def test_a_pod_waits_for_the_link_and_starts_when_it_comes_up(tmp_path: Path) -> None:
    rig = RuntimeRig.create(tmp_path, link_up=False)
    spec = pod_spec()
    rig.runtime.sync_pod(spec)
    state = rig.pod(spec.uid).containers[0].state
    assert (state.reason, state.message) == (
        "ContainerCreating",
        "waiting for the device to connect",
    )
    assert rig.device.starts == []
    rig.runtime.link_changed(True)
    await _running(rig, spec.uid)
    assert rig.pod(spec.uid).containers[0].ready
    rig.runtime.link_changed(False)
    assert not rig.pod(spec.uid).containers[0].ready  # readiness follows the link
    assert rig.pod(spec.uid).containers[0].running  # the device may still run it
    rig.runtime.link_changed(True)
    assert rig.pod(spec.uid).containers[0].ready
    await rig.runtime.close()


# --- adoption and resuming after a gateway restart --------------------------------------------


async def test_a_task_still_running_on_the_device_is_adopted_not_started(
    tmp_path: Path,
) -> None:
    spec = pod_spec(policy=Policy.ALWAYS)
    task_id = f"{spec.uid}/0/2"
    rig = RuntimeRig.create(tmp_path, listed=[TaskInfo(task_id, "echo", True, None, 0, 0)])
    rig.device.running(task_id)
    rig.runtime.sync_pod(spec)
    status = rig.pod(spec.uid).containers[0]
    assert status.running and status.ready
    assert (status.restart_count, status.container_id) == (2, task_id)
    assert rig.device.starts == []
    # It goes on as any task of ours: its exit is recorded and the policy applies.
    rig.device.exit(task_id, 0)
    assert await _running(rig, spec.uid, after=task_id) == f"{spec.uid}/0/3"
    await rig.runtime.close()


def _prior(
    spec_uid: str, restarts: int, state: ContainerState | None
) -> tuple[tuple[int, ContainerState | None], ...]:
    del spec_uid
    return ((restarts, state),)


RAN = ContainerState(ContainerPhase.RUNNING)


async def test_after_a_gateway_restart_a_finished_container_stays_finished(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path, listed=[])
    spec = pod_spec(policy=Policy.NEVER)
    done = ContainerState(ContainerPhase.TERMINATED, reason="Completed", exit_code=0)
    rig.runtime.sync_pod(dataclasses.replace(spec, prior=_prior(spec.uid, 0, done)))
    assert rig.pod(spec.uid).containers[0].state == done
    assert rig.device.starts == []
    await rig.runtime.close()


async def test_after_a_gateway_restart_a_task_gone_from_the_device_is_lost_and_restarted(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path, listed=[])
    spec = pod_spec(policy=Policy.ALWAYS)
    rig.runtime.sync_pod(dataclasses.replace(spec, prior=_prior(spec.uid, 4, RAN)))
    assert await _running(rig, spec.uid) == f"{spec.uid}/0/5"
    status = rig.pod(spec.uid).containers[0]
    assert status.restart_count == 5
    assert status.last_state is not None
    assert (status.last_state.reason, status.last_state.exit_code) == ("Lost", LOST_EXIT_CODE)
    assert status.last_state.task_id == f"{spec.uid}/0/4"
    await rig.runtime.close()


@pytest.mark.parametrize(("policy", "next_task"), [(Policy.NEVER, None), (Policy.ALWAYS, "0/3")])
async def test_a_task_that_ended_before_its_status_was_written_is_not_started_again(
    tmp_path: Path, policy: RestartPolicy, next_task: str | None
) -> None:
    """The gateway died before writing any status of the pod, and the task ended while no
    gateway listened: the device's task list is all there is, and it says the task ran."""
    spec = pod_spec(policy=policy)
    task_id = f"{spec.uid}/0/2"
    rig = RuntimeRig.create(tmp_path, listed=[TaskInfo(task_id, "echo", False, 0, 0, 0)])
    rig.device.ended(task_id, 0)
    rig.runtime.sync_pod(spec)  # no status on record
    if next_task is None:
        status = rig.pod(spec.uid).containers[0]
        assert status.state.phase is ContainerPhase.TERMINATED
        assert (status.state.exit_code, status.state.task_id) == (0, task_id)
        assert rig.device.starts == []
    else:
        assert await _running(rig, spec.uid) == f"{spec.uid}/{next_task}"
        assert rig.device.starts == [f"{spec.uid}/{next_task}"]
    await rig.runtime.close()


@pytest.mark.parametrize(("policy", "restarts"), [(Policy.ON_FAILURE, True), (Policy.NEVER, False)])
async def test_after_a_gateway_restart_a_task_that_ended_meanwhile_keeps_its_exit_code(
    tmp_path: Path, policy: RestartPolicy, restarts: bool
) -> None:
    spec = pod_spec(policy=policy)
    task_id = f"{spec.uid}/0/1"
    rig = RuntimeRig.create(tmp_path, listed=[TaskInfo(task_id, "echo", False, 2, 0, 0)])
    rig.device.ended(task_id, 2)
    rig.runtime.sync_pod(dataclasses.replace(spec, prior=_prior(spec.uid, 1, RAN)))
    status = rig.pod(spec.uid).containers[0]
    ended = status.last_state if restarts else status.state
    assert ended is not None
    assert (ended.reason, ended.exit_code, ended.task_id) == ("Error", 2, task_id)
    assert ended.message == "exited while the gateway was away"
    if restarts:
        assert await _running(rig, spec.uid) == f"{spec.uid}/0/2"
    else:
        assert rig.device.starts == []
    await rig.runtime.close()


@pytest.mark.parametrize(("policy", "next_task"), [(Policy.NEVER, None), (Policy.ALWAYS, "0/1")])
@pytest.mark.parametrize("prior", ["none", "waiting"])
async def test_a_task_started_just_before_a_crash_and_lost_in_a_reboot_is_not_started_again(
    tmp_path: Path, policy: RestartPolicy, next_task: str | None, prior: str
) -> None:
    """A gateway sends START and dies before any status says the container ran (none, or the
    first one: waiting); the device reboots while no gateway listens, so its task list is
    empty. The next gateway must not send START with that task id again (the device would run
    it a second time): the instance ran and was lost, and the restart policy applies."""
    spec = pod_spec(policy=policy)
    first = RuntimeRig.create(tmp_path)
    first.runtime.sync_pod(spec)
    await until("started", lambda: first.device.starts == [f"{spec.uid}/0/0"])
    # The next gateway: same log directory, a rebooted device that lists nothing.
    rig = RuntimeRig.create(tmp_path, listed=[])
    recorded = {"none": (), "waiting": _prior(spec.uid, 0, ContainerState.waiting("x"))}
    rig.runtime.sync_pod(dataclasses.replace(spec, prior=recorded[prior]))
    status = rig.pod(spec.uid).containers[0]
    if next_task is None:
        assert (status.state.reason, status.state.exit_code) == ("Lost", LOST_EXIT_CODE)
        assert status.state.task_id == f"{spec.uid}/0/0"
        assert rig.device.starts == []
    else:
        assert await _running(rig, spec.uid) == f"{spec.uid}/{next_task}"
        assert rig.device.starts == [f"{spec.uid}/{next_task}"]
    await rig.runtime.close()
    await first.runtime.close()


async def test_a_start_the_device_refused_leaves_its_task_id_free(tmp_path: Path) -> None:
    """A refused START did not use the task id: a gateway restarted meanwhile starts it."""
    spec = pod_spec(policy=Policy.NEVER)
    first = RuntimeRig.create(tmp_path)
    first.device.start_errors["echo"] = DeviceRejected("no free task slot", code="NO_SLOT")
    first.runtime.sync_pod(spec)
    await until(
        "refused", lambda: first.pod(spec.uid).containers[0].state.reason == "RunContainerError"
    )
    await first.runtime.close()
    rig = RuntimeRig.create(tmp_path, listed=[])
    rig.runtime.sync_pod(dataclasses.replace(spec, prior=_prior(spec.uid, 0, None)))
    assert await _running(rig, spec.uid) == f"{spec.uid}/0/0"
    await rig.runtime.close()


async def test_after_a_gateway_restart_a_lost_task_of_a_never_pod_is_not_restarted(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path, listed=[])
    spec = pod_spec(policy=Policy.NEVER)
    rig.runtime.sync_pod(dataclasses.replace(spec, prior=_prior(spec.uid, 0, RAN)))
    status = rig.pod(spec.uid).containers[0]
    assert (status.state.reason, status.state.exit_code) == ("Lost", LOST_EXIT_CODE)
    assert rig.device.starts == []
    await rig.runtime.close()


# --- lost tasks, deletes, orphans -------------------------------------------------------------


@pytest.mark.parametrize(("policy", "restarts"), [(Policy.NEVER, False), (Policy.ALWAYS, True)])
async def test_a_lost_task_ends_as_killed_and_the_policy_applies(
    tmp_path: Path, policy: RestartPolicy, restarts: bool
) -> None:
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=policy)
    rig.runtime.sync_pod(spec)
    first = await _running(rig, spec.uid)
    rig.device.lose(first, "device rebooted")
    if restarts:
        assert await _running(rig, spec.uid, after=first) == f"{spec.uid}/0/1"
        ended = rig.pod(spec.uid).containers[0].last_state
    else:
        await until(
            "terminated",
            lambda: rig.pod(spec.uid).containers[0].state.phase is ContainerPhase.TERMINATED,
        )
        ended = rig.pod(spec.uid).containers[0].state
    assert ended is not None
    assert (ended.reason, ended.message, ended.exit_code) == (
        "Lost",
        "device rebooted",
        LOST_EXIT_CODE,
    )
    assert "TaskLost" in rig.reasons()
    await rig.runtime.close()


async def test_a_delete_stops_every_task_with_the_grace_period_then_finishes(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=Policy.ALWAYS, containers=2)
    rig.runtime.sync_pod(spec)
    tasks = [await _running(rig, spec.uid, i) for i in range(2)]
    rig.runtime.delete_pod(spec.uid, 5.0)
    await until("finished", lambda: rig.finished == [spec.uid])
    assert sorted(rig.device.stops) == [(t, 5.0) for t in tasks]
    final = rig.pod(spec.uid)  # as it was when it finished
    assert all(c.state.phase is ContainerPhase.TERMINATED for c in final.containers)
    assert all(c.last_state is None for c in final.containers)  # not restarted
    assert rig.runtime.snapshot(spec.uid) is None  # forgotten once finished
    assert rig.reasons().count("Killing") == 2
    await rig.runtime.close()


async def test_a_delete_whose_task_already_ended_unseen_takes_the_exit_from_the_task_list(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=Policy.ALWAYS)
    rig.runtime.sync_pod(spec)
    task_id = await _running(rig, spec.uid)
    rig.device.ended(task_id, 0)  # its exit report never arrived
    rig.runtime.delete_pod(spec.uid, 0.0)
    await until("finished", lambda: rig.finished == [spec.uid])
    state = rig.pod(spec.uid).containers[0].state
    assert (state.reason, state.exit_code, state.task_id) == ("Completed", 0, task_id)
    await rig.runtime.close()


async def test_a_pod_deleted_before_it_ran_finishes_at_once(tmp_path: Path) -> None:
    rig = RuntimeRig.create(tmp_path)
    rig.runtime.delete_pod("never-seen", 30.0)
    assert rig.finished == ["never-seen"]
    await rig.runtime.close()


async def test_a_force_deleted_pod_is_stopped_now_and_forgotten(tmp_path: Path) -> None:
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=Policy.ALWAYS)
    rig.runtime.sync_pod(spec)
    task_id = await _running(rig, spec.uid)
    rig.runtime.forget_pod(spec.uid)
    assert rig.runtime.snapshot(spec.uid) is None
    await until("stopped", lambda: rig.device.stops == [(task_id, 0.0)])
    await rig.runtime.close()


async def test_a_force_deleted_pod_is_in_use_until_its_task_ends(tmp_path: Path) -> None:
    """Its logs must stay while its task may still print (the log janitor asks `uses_pod`)."""
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=Policy.ALWAYS)
    rig.runtime.sync_pod(spec)
    task_id = await _running(rig, spec.uid)
    assert rig.runtime.uses_pod(spec.uid) and not rig.runtime.uses_pod(pod_spec().uid)
    rig.runtime.forget_pod(spec.uid)
    assert rig.runtime.uses_pod(spec.uid)  # stopped, not ended yet
    rig.device.exit(task_id, 0)
    await until("ended", lambda: not rig.runtime.uses_pod(spec.uid))
    assert spec.uid not in rig.runtime.pod_uids_in_use()
    await rig.runtime.close()


async def test_a_force_deleted_pod_is_in_use_until_its_last_task_ends(tmp_path: Path) -> None:
    """Two containers: the pod's logs stay until both tasks have ended, whichever ends first."""
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec(policy=Policy.ALWAYS, containers=2)
    rig.runtime.sync_pod(spec)
    first, second = await _running(rig, spec.uid, 0), await _running(rig, spec.uid, 1)
    rig.device.slow_stops |= {first, second}
    rig.runtime.forget_pod(spec.uid)
    await until("stops sent", lambda: len(rig.device.stops) == 2)
    rig.device.exit(second, 0)
    await until("second ended", lambda: second not in rig.runtime.instances)
    assert rig.runtime.uses_pod(spec.uid) and spec.uid in rig.runtime.pod_uids_in_use()
    rig.device.exit(first, 0)
    await until("both ended", lambda: not rig.runtime.uses_pod(spec.uid))
    assert spec.uid not in rig.runtime.pod_uids_in_use()
    await rig.runtime.close()


async def test_only_running_tasks_of_pods_that_are_gone_are_orphans(tmp_path: Path) -> None:
    known, gone = pod_spec().uid, pod_spec().uid
    listed = [
        TaskInfo(f"{known}/0/0", "echo", True, None, 0, 0),
        TaskInfo(f"{gone}/0/0", "echo", True, None, 0, 0),
        TaskInfo(f"{gone}/1/0", "echo", False, 0, 0, 0),  # ended: nothing to stop
        TaskInfo("blink", "blink", True, None, 0, 0),  # not made by a gateway
    ]
    rig = RuntimeRig.create(tmp_path, listed=listed)
    for info in listed:
        rig.device.tasks[info.task_id] = info
    assert rig.runtime.stop_orphans({known}) == [f"{gone}/0/0"]
    await until("stopped", lambda: rig.device.stops == [(f"{gone}/0/0", 0.0)])
    await rig.runtime.close()


async def test_a_started_container_gets_the_kubelets_events_in_order(tmp_path: Path) -> None:
    """Pulled, Created, Started: what `kubectl describe pod` shows for a kubelet's container."""
    rig = RuntimeRig.create(tmp_path)
    spec = pod_spec()
    rig.runtime.sync_pod(spec)
    await _running(rig, spec.uid)
    await until("events", lambda: "Started" in rig.reasons())
    assert rig.reasons()[:3] == ["Pulled", "Created", "Started"]


async def test_an_unanswered_start_is_settled_by_the_task_list_never_sent_again(
    tmp_path: Path,
) -> None:
    """START ran on the device but its answer never came (a timeout, the link still up): the
    runtime asks the task list instead of retrying START with the same id, which would run the
    task a second time if it had meanwhile finished."""
    rig = RuntimeRig.create(tmp_path)
    rig.device.unanswered_starts.add("echo")
    spec = pod_spec(policy=Policy.NEVER)
    rig.runtime.sync_pod(spec)
    task_id = await _running(rig, spec.uid)
    assert rig.device.starts == [task_id]


async def test_an_unanswered_start_that_already_ended_is_settled_as_its_exit(
    tmp_path: Path,
) -> None:
    rig = RuntimeRig.create(tmp_path)
    rig.device.unanswered_starts.add("echo")
    original = rig.device.list_tasks

    async def ended_by_then() -> list[TaskInfo]:
        for task_id in list(rig.device.tasks):
            rig.device.ended(task_id, 0)
        return list(await original())

    rig.device.list_tasks = ended_by_then  # type: ignore[method-assign]
    spec = pod_spec(policy=Policy.NEVER)
    rig.runtime.sync_pod(spec)
    await until(
        "succeeded", lambda: pod_phase(Policy.NEVER, rig.pod(spec.uid).containers) == "Succeeded"
    )
    assert len(rig.device.starts) == 1
