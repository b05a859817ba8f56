"""A gateway without Kubernetes, for SIGKILL tests of the output path: one device, one pod.

    python -m tests.link.persist_harness DEVICE_LINK LOG_ROOT UID BYTES [--resume]

It wires the real parts as the gateway does (gateway/device_node.py): a `DeviceSession` with
persist-then-ack, output before the runtime exists to the `OutputSpooler`, a `DeviceRuntime`
created from the handshake's task list, and the pod handed over once the link is up (after a
pause, so re-sent output meets a runtime that does not know the pod yet). The pod runs
`flood BYTES` once; `--resume` says the pod was started by an earlier (killed) process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from gateway.link.events import Reconciled, SessionStateChanged, TaskOutput
from gateway.link.session import DeviceSession
from gateway.link.state import SessionState
from gateway.logs import LogConfig, LogStore
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.model import (
    ContainerPhase,
    ContainerState,
    PodSpecView,
    RestartPolicy,
    TaskSpec,
)
from gateway.runtime.output import OutputSpooler
from gateway.transport.serial import serial_opener
from tests.link.helpers import FAST_SESSION

# Handing the pod over this long after the link is up leaves the re-sent output to the spool.
POD_KNOWN_AFTER_S = 0.2


def pod_spec(uid: str, size: int, *, resume: bool) -> PodSpecView:
    prior = ((0, ContainerState(ContainerPhase.RUNNING)),) if resume else ()
    return PodSpecView(
        uid=uid,
        namespace="default",
        name="flood",
        node_name="harness",
        restart_policy=RestartPolicy.NEVER,
        containers=(TaskSpec("main", "flood", "flood", ("flood", str(size)), ()),),
        prior=prior,
    )


async def serve(link: Path, root: Path, spec: PodSpecView) -> None:
    store = LogStore(LogConfig(root=root))
    config = dataclasses.replace(FAST_SESSION, hold_output=True)
    session = DeviceSession(
        serial_opener(lambda: os.path.realpath(link)), label="harness", config=config
    )
    spooler = OutputSpooler(store.spool, session, label="harness")
    runtime: DeviceRuntime | None = None
    events = session.subscribe()
    session.start()

    def hand_over() -> None:
        assert runtime is not None
        runtime.link_changed(True)
        runtime.sync_pod(spec)

    async for event in events:
        if isinstance(event, Reconciled) and runtime is None:
            runtime = DeviceRuntime(
                session,
                store,
                apps=("flood",),
                backoff=BackoffPolicy(),
                on_change=lambda uid: None,
                on_finished=lambda uid: None,
                on_event=lambda *event: None,
                label="harness",
                spooler=spooler,
            )
            runtime.reconciled(event.device_tasks)
        elif runtime is None:
            if isinstance(event, TaskOutput) and not spooler.take(
                event.task_id, event.stream, event.offset, event.data
            ):
                session.ack_output(event.task_id, event.stream, event.end)
        elif isinstance(event, SessionStateChanged) and event.new is SessionState.UP:
            if runtime.snapshot(spec.uid) is None:
                asyncio.get_running_loop().call_later(POD_KNOWN_AFTER_S, hand_over)
            else:
                runtime.link_changed(True)
        else:
            runtime.handle(event)


def main() -> None:
    link, root, uid, size = sys.argv[1:5]
    spec = pod_spec(uid, int(size), resume="--resume" in sys.argv[5:])
    asyncio.run(serve(Path(link), Path(root), spec))


if __name__ == "__main__":
    main()
