"""spec.activeDeadlineSeconds as the kubelet enforces it (its active deadline handler): a pod
that has not ended and has been active (since status.startTime) longer than that fails with
reason DeadlineExceeded; its tasks are stopped and nothing restarts.

The controller asks on each look at a pod (`ActiveDeadlines.past`); a pod not yet past its
deadline gets a timer that makes the controller look again when it is due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.kube.events import EventRecorder, ObjectRef
from gateway.kube.pod_state import PodState
from gateway.kube.pod_status import failed_admission_status
from gateway.runtime.device_runtime import DeviceRuntime

# The kubelet's words for a pod past spec.activeDeadlineSeconds (its active deadline handler).
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


class ActiveDeadlines:
    """The deadlines of one controller's pods: checked, timed, and enforced once due."""

    def __init__(
        self,
        events: EventRecorder,
        host_ip: str,
        *,
        write_status: Callable[[str, dict[str, Any]], None],
        due: Callable[[str], None],
    ) -> None:
        self.events = events
        self.host_ip = host_ip
        self.write_status = write_status  # a status to write for the pod of this uid
        self.due = due  # the pod of this uid reached its deadline: look at it again

    def past(self, state: PodState, runtime: DeviceRuntime) -> bool:
        """Whether the pod is past its deadline; the first time it is, it fails. Until then
        its timer is armed for when it is due."""
        if state.deadline_exceeded:
            return True
        if state.deadline_timer is not None:
            state.deadline_timer.cancel()
            state.deadline_timer = None
        view = state.view
        deadline = view.active_deadline_s
        if deadline is None or view.terminal or state.rejected:
            return False
        left = deadline - (datetime.now(UTC) - state.start_time).total_seconds()
        if left > 0:
            # The deadline may be changed (shortened) on a running pod: each update re-arms.
            loop = asyncio.get_running_loop()
            state.deadline_timer = loop.call_later(left, self._fired, state)
            return False
        if state.synced:
            if not runtime.fail_pod(view.uid, DEADLINE_REASON, DEADLINE_MESSAGE):
                return False  # it ended meanwhile: its own phase stands
        elif state.prepare_task is None or not any(
            c.state.reason == "CreateContainerConfigError" for c in state.preparing
        ):
            # Not handed to the runtime yet: once it is (tasks of a running pod adopted after
            # a gateway restart), the controller asks again and the runtime stops them.
            return False
        else:
            # Waiting for a ConfigMap or Secret: nothing of it runs on the device.
            state.prepare_task.cancel()
            state.prepare_task = None
            state.preparing = []
            state.rejected = True
            body = failed_admission_status(
                DEADLINE_REASON, DEADLINE_MESSAGE, self.host_ip, state.start_time
            )
            self.write_status(view.uid, body)
        state.deadline_exceeded = True
        self.events.record(ObjectRef.pod(view.raw), "Normal", DEADLINE_REASON, DEADLINE_MESSAGE)
        return True

    def _fired(self, state: PodState) -> None:
        state.deadline_timer = None
        self.due(state.view.uid)
