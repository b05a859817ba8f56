"""The runtime against a real session and an emulated device on a pty: stops that the device
ignores or cannot answer, bursts of exits, starts too large for the device, starts whose answer
a lost link swallowed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_protocol import StartTask, StopTask
from gateway.link.events import Reconciled, SessionStateChanged
from gateway.link.session import DeviceSession, EventSubscription
from gateway.link.state import SessionState
from gateway.logs.config import LogConfig
from gateway.logs.store import LogStore
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.model import (
    ContainerPhase,
    ContainerState,
    PodSnapshot,
    PodSpecView,
    RestartPolicy,
    TaskSpec,
)
from hil.emulator.device import EmulatedDevice
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile
from tests.gateway.fakes import until
from tests.link.helpers import FAST_LINK, FAST_SESSION, WAIT, session_for

# A stop the device does not answer times out after grace + this slack, then is sent again.
SESSION = dataclasses.replace(FAST_SESSION, hold_output=True, stop_slack=0.3)


@dataclass
class Harness:
    device: EmulatedDevice
    runtime: DeviceRuntime
    finished: list[str] = field(default_factory=list)
    final: dict[str, PodSnapshot] = field(default_factory=dict)  # as each pod finished
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def pod(self, uid: str) -> PodSnapshot:
        """The runtime's pod now, or as it was when it finished."""
        snapshot = self.runtime.snapshot(uid) or self.final.get(uid)
        assert snapshot is not None, uid
        return snapshot

    def on_finished(self, uid: str) -> None:
        snapshot = self.runtime.snapshot(uid)
        assert snapshot is not None
        self.final[uid] = snapshot
        self.finished.append(uid)

    def received(self, kind: type, uid: str) -> list[Any]:
        return [
            m
            for m in self.device.received
            if isinstance(m, kind) and m.task_id.startswith(uid)  # type: ignore[attr-defined]
        ]


async def _feed(sub: EventSubscription, runtime: DeviceRuntime) -> None:
    """What the gateway's DeviceNode does with the session's events."""
    async for event in sub:
        if isinstance(event, Reconciled):
            runtime.reconciled(event.device_tasks)
        elif isinstance(event, SessionStateChanged):
            if event.new in (SessionState.UP, SessionState.DOWN):
                runtime.link_changed(event.new is SessionState.UP)
        else:
            runtime.handle(event)


@contextlib.asynccontextmanager
async def runtime_on_device(tmp_path: Path, profile: DeviceProfile) -> AsyncIterator[Harness]:
    devices = tmp_path / "devices"
    devices.mkdir()
    async with (
        EmulatedFleet(devices, [profile], link_config=FAST_LINK) as fleet,
        session_for(devices, profile.device_id, SESSION) as session,
    ):
        facts = await session.wait_up(WAIT)
        harness = Harness(fleet.device(profile.device_id), None)  # type: ignore[arg-type]
        runtime = DeviceRuntime(
            session,
            LogStore(LogConfig(tmp_path / "logs", fsync=False)),
            apps=facts.apps,
            backoff=BackoffPolicy(initial_s=0.1, max_s=0.5),
            on_change=lambda _uid: None,
            on_finished=harness.on_finished,
            on_event=lambda *event: harness.events.append(event),
            label=profile.device_id,
            max_frame=facts.max_frame,
        )
        harness.runtime = runtime
        runtime.link_changed(True)
        sub = session.subscribe()
        feeder = asyncio.create_task(_feed(sub, runtime), name="feed runtime")
        try:
            yield harness
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            sub.close()
            await runtime.close()


def pod(
    app: str,
    argv: tuple[str, ...] = (),
    *,
    containers: int = 1,
    policy: RestartPolicy = RestartPolicy.NEVER,
    env: tuple[tuple[str, str], ...] = (),
) -> PodSpecView:
    return PodSpecView(
        uid=str(uuid.uuid4()),
        namespace="ns",
        name="p",
        node_name="n",
        restart_policy=policy,
        containers=tuple(TaskSpec(f"c{i}", app, app, argv, env) for i in range(containers)),
    )


async def test_a_stop_the_device_ignores_is_sent_again_until_confirmed(tmp_path: Path) -> None:
    async with runtime_on_device(tmp_path, DeviceProfile(device_id="stops")) as h:
        spec = pod("forever", ("100",), policy=RestartPolicy.ALWAYS)
        h.runtime.sync_pod(spec)
        await until("running", lambda: h.pod(spec.uid).containers[0].running)
        h.device.ignore_stops = 2  # the firmware takes two STOPs and does nothing
        h.runtime.delete_pod(spec.uid, 0.0)
        await until("the delete completes", lambda: spec.uid in h.finished)
        assert len(h.received(StopTask, spec.uid)) == 3
        assert h.pod(spec.uid).containers[0].state.phase is ContainerPhase.TERMINATED
        assert not h.runtime.stops.pending


async def test_a_stop_answered_no_such_task_completes_the_delete(tmp_path: Path) -> None:
    async with runtime_on_device(tmp_path, DeviceProfile(device_id="forgot")) as h:
        spec = pod("forever", ("100",))
        h.runtime.sync_pod(spec)
        await until("running", lambda: h.pod(spec.uid).containers[0].running)
        task_id = h.pod(spec.uid).containers[0].task_id
        assert task_id is not None
        h.device.lose_task(task_id)  # gone without an exit report
        h.runtime.delete_pod(spec.uid, 0.0)
        await until("the delete completes", lambda: spec.uid in h.finished)
        state = h.pod(spec.uid).containers[0].state
        assert (state.phase, state.reason, state.exit_code) == (
            ContainerPhase.TERMINATED,
            "ContainerStatusUnknown",
            137,
        )
        assert state.task_id == task_id  # still names the task (containerID)


async def test_fifty_tasks_ending_at_once_all_report_their_exit(tmp_path: Path) -> None:
    profile = DeviceProfile(device_id="fifty", task_slots=64, max_frame=4096)
    async with runtime_on_device(tmp_path, profile) as h:
        spec = pod("echo", ("hi",), containers=50)
        h.runtime.sync_pod(spec)
        await until(
            "every container terminated",
            lambda: all(
                c.state.phase is ContainerPhase.TERMINATED and c.state.exit_code == 0
                for c in h.pod(spec.uid).containers
            ),
        )
        h.runtime.delete_pod(spec.uid, 5.0)
        await until("the delete completes", lambda: spec.uid in h.finished)
        assert not h.received(StopTask, spec.uid)  # nothing left to stop


async def test_a_start_too_large_for_the_device_fails_the_pod_without_sending(
    tmp_path: Path,
) -> None:
    async with runtime_on_device(tmp_path, DeviceProfile(device_id="small")) as h:
        spec = pod("echo", ("x" * 200,) * 10, containers=2, policy=RestartPolicy.ALWAYS)
        h.runtime.sync_pod(spec)
        failure = h.pod(spec.uid).failure
        assert failure is not None
        assert failure[0] == "StartError"
        state = h.pod(spec.uid).containers[0].state
        assert (state.phase, state.reason, state.exit_code) == (
            ContainerPhase.TERMINATED,
            "StartError",
            128,
        )
        assert "2000 bytes" in state.message and "at most 512 bytes" in state.message
        assert not h.received(StartTask, spec.uid)
        assert any(e[2:4] == ("Warning", "Failed") for e in h.events)


async def test_an_ephemeral_container_added_later_runs_once(tmp_path: Path) -> None:
    async with runtime_on_device(tmp_path, DeviceProfile(device_id="debug")) as h:
        spec = pod("forever", ("100",), policy=RestartPolicy.ALWAYS)
        h.runtime.sync_pod(spec)
        await until("running", lambda: h.pod(spec.uid).containers[0].running)
        debug = TaskSpec("dbg", "echo", "echo", ("hello",), (), ephemeral=True)
        h.runtime.sync_pod(dataclasses.replace(spec, containers=(*spec.containers, debug)))
        await until(
            "the ephemeral container ended",
            lambda: (
                len(h.pod(spec.uid).containers) == 2
                and h.pod(spec.uid).containers[1].state.phase is ContainerPhase.TERMINATED
            ),
        )
        assert h.pod(spec.uid).containers[1].ephemeral
        assert h.pod(spec.uid).containers[1].state.exit_code == 0
        assert h.pod(spec.uid).containers[1].state.task_id == f"{spec.uid}/1/0"
        assert h.pod(spec.uid).containers[0].running  # the pod's own container is untouched
        assert h.pod(spec.uid).containers[1].last_state is None  # no restart, though Always
        assert [m.task_id for m in h.received(StartTask, spec.uid)] == [
            f"{spec.uid}/0/0",
            f"{spec.uid}/1/0",
        ]


async def test_a_start_whose_answer_the_lost_link_swallowed_runs_to_its_end(
    tmp_path: Path,
) -> None:
    """The device hangs with the START on its way: the request fails (link lost), the START is
    delivered when the link resumes, and the device runs the task. Its start, output and exit
    must reach the container, which ends Completed (not stuck waiting), run exactly once."""
    async with runtime_on_device(tmp_path, DeviceProfile(device_id="hung")) as h:
        session = h.runtime.device
        assert isinstance(session, DeviceSession)
        h.device.hang()  # the START is written and sits unanswered
        spec = pod("counter", ("3", "10"))
        h.runtime.sync_pod(spec)
        task_id = f"{spec.uid}/0/0"

        def state() -> ContainerState:
            snapshot = h.runtime.snapshot(spec.uid)
            assert snapshot is not None
            return snapshot.containers[0].state

        await session.wait_state(SessionState.DOWN, timeout_s=WAIT)  # the link is lost
        await until("the runtime saw the link go", lambda: not h.runtime.link_up)
        assert state().phase is ContainerPhase.WAITING
        h.device.resume()
        await until(
            "the container terminated",
            lambda: state().phase is ContainerPhase.TERMINATED,
        )
        ended = state()
        assert (ended.reason, ended.exit_code, ended.task_id) == ("Completed", 0, task_id)
        assert h.device.starts[task_id] == 1  # run once, not started again
        assert session.stats.dropped_reports == 0
        log_file = h.runtime.logs.container_dir("ns", "p", spec.uid, "c0") / "0.log"
        lines = log_file.read_text().splitlines()
        assert [line.split()[-1] for line in lines] == ["1", "2", "3"], lines


async def test_a_start_lost_with_the_link_is_sent_again_after_the_task_list(
    tmp_path: Path,
) -> None:
    """The same, but the device reboots instead of resuming: the START never reaches it. The
    task list after the reconnect says so, and the container is started again, once."""
    async with runtime_on_device(tmp_path, DeviceProfile(device_id="reboots")) as h:
        session = h.runtime.device
        assert isinstance(session, DeviceSession)
        h.device.hang()
        spec = pod("counter", ("3", "10"))
        h.runtime.sync_pod(spec)
        task_id = f"{spec.uid}/0/0"

        def state() -> ContainerState:
            snapshot = h.runtime.snapshot(spec.uid)
            assert snapshot is not None
            return snapshot.containers[0].state

        await session.wait_state(SessionState.DOWN, timeout_s=WAIT)
        await until("the runtime saw the link go", lambda: not h.runtime.link_up)
        assert h.runtime.unconfirmed == {task_id}
        h.device.reboot()
        await until(
            "the container terminated",
            lambda: state().phase is ContainerPhase.TERMINATED,
        )
        ended = state()
        assert (ended.reason, ended.exit_code, ended.task_id) == ("Completed", 0, task_id)
        assert h.device.starts[task_id] == 1
        assert not h.runtime.unconfirmed
