"""When a container is started again: after it ended, with the kubelet's restart back-off
(`CrashLoopBackOff`, or `RunContainerError` when the device refused the start), and while the
device does not offer its app, with the image pull back-off (`ErrImagePull`, then
`ImagePullBackOff`; gateway.runtime.backoff has the numbers).

The timers live in the pod record (`restart_timers`, one per container), so whatever ends the
pod (a delete, a failure) cancels them with the rest of it. The start itself is the runtime's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from gateway.runtime.backoff import BackoffPolicy, PullBackoff
from gateway.runtime.model import ContainerPhase, ContainerState
from gateway.runtime.records import EventSink, PodRecord


class ContainerRestarts:
    """One device's containers waiting to be started again, by pod record and index."""

    def __init__(
        self,
        pods: Mapping[str, PodRecord],
        policy: BackoffPolicy,
        *,
        start: Callable[[PodRecord, int], None],
        on_change: Callable[[str], None],
        on_event: EventSink,
    ) -> None:
        self.pods = pods
        self.policy = policy
        self.start = start
        self.on_change = on_change
        self.on_event = on_event
        self._loop = asyncio.get_running_loop()

    def _waiting_pod(self, uid: str) -> PodRecord | None:
        """The pod, unless it is gone or ended meanwhile: then nothing starts again."""
        record = self.pods.get(uid)
        if record is None or record.deleting or record.failure is not None:
            return None
        return record

    # --- restarts -----------------------------------------------------------------------------

    def schedule(
        self, record: PodRecord, index: int, *, start_error: str = "", same_instance: bool = False
    ) -> None:
        """Start the container again after its back-off (the first restart at once).
        `same_instance`: the device refused the start and nothing ran; the retry is the same
        instance (the refused id is free again), not one more restart."""
        status = record.containers[index]
        delay = record.backoffs[index].next_delay(self._loop.time())
        if status.state.phase is ContainerPhase.TERMINATED:
            status.last_state = status.state
        if delay > 0:
            spec = record.spec
            message = (
                f"back-off {delay:g}s restarting failed container={status.name} "
                f"pod={spec.name}_{spec.namespace}({spec.uid})"
            )
            if start_error:
                message += f": {start_error}"  # the device's own words say what to fix
            reason = "RunContainerError" if start_error else "CrashLoopBackOff"
            status.state = ContainerState.waiting(reason, message)
            self.on_event(spec.uid, status.name, "Warning", "BackOff", message)
        record.restart_timers[index] = self._loop.call_later(
            delay, self._restart, record.spec.uid, index, not same_instance
        )

    def _restart(self, uid: str, index: int, new_instance: bool = True) -> None:
        record = self._waiting_pod(uid)
        if record is None:
            return
        record.restart_timers.pop(index, None)
        status = record.containers[index]
        if new_instance and status.last_state is not None:
            status.restart_count += 1
        self.start(record, index)
        self.on_change(uid)

    # --- an app the device does not offer -----------------------------------------------------

    def app_missing(self, record: PodRecord, index: int, offered: Sequence[str]) -> None:
        """As the kubelet with an image it cannot pull: `ErrImagePull`, then `ImagePullBackOff`
        until the next attempt, 10 s doubling to 5 min (the restart back-off's numbers). A
        device that comes back offering the app (new firmware) starts it at once."""
        status = record.containers[index]
        task_spec = record.spec.containers[index]
        status.state = ContainerState.waiting(
            "ErrImagePull",
            f'app "{task_spec.app}" (image "{task_spec.image}") is not offered by this '
            f"device; it offers: {', '.join(offered) or 'nothing'}",
        )
        self.on_event(record.spec.uid, status.name, "Warning", "Failed", status.state.message)
        backoff = record.pull_backoffs.setdefault(index, PullBackoff(self.policy))
        delay = backoff.next_delay()
        record.restart_timers[index] = self._loop.call_later(
            delay / 2, self._pull_backing_off, record.spec.uid, index, delay / 2
        )

    def _pull_backing_off(self, uid: str, index: int, remaining: float) -> None:
        record = self._waiting_pod(uid)
        if record is None:
            return
        status = record.containers[index]
        message = f'Back-off pulling image "{record.spec.containers[index].image}"'
        status.state = ContainerState.waiting("ImagePullBackOff", message)
        self.on_event(uid, status.name, "Normal", "BackOff", message)
        record.restart_timers[index] = self._loop.call_later(
            remaining, self._pull_again, uid, index
        )
        self.on_change(uid)

    def _pull_again(self, uid: str, index: int) -> None:
        record = self._waiting_pod(uid)
        if record is None:
            return
        record.restart_timers.pop(index, None)
        self.start(record, index)
        self.on_change(uid)

    def apps_changed(self, offers: Callable[[str], bool]) -> None:
        """The device offers other apps now: containers waiting for one it `offers` start
        without waiting out their back-off."""
        for record in list(self.pods.values()):
            for index in list(record.pull_backoffs):
                timer = record.restart_timers.get(index)
                if timer is not None and offers(record.spec.containers[index].app):
                    timer.cancel()
                    self._pull_again(record.spec.uid, index)
