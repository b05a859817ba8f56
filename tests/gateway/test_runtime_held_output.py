"""Output for pods not known yet is spooled to disk, within a per-device budget: a device that
invents task ids of the gateway's shape cannot fill the disk, however small its frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.link.events import TaskInfo, TaskOutput
from gateway.logs.config import LogConfig
from gateway.logs.store import LogStore
from gateway.runtime import output
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime


class DeviceSide:
    """The device session as the runtime sees it; records acknowledgements."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, str, int]] = []

    async def start_task(
        self,
        task_id: str,
        app: str,
        argv: Sequence[str],
        env: Sequence[tuple[str, str]],
        *,
        working_dir: str = "",
    ) -> None:
        raise AssertionError("not used")

    async def stop_task(self, task_id: str, grace_s: float) -> None:
        raise AssertionError("not used")

    async def list_tasks(self) -> Sequence[TaskInfo]:
        return []

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        self.acked.append((task_id, stream, offset))


async def test_output_for_unknown_pods_is_spooled_within_a_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "UNKNOWN_POD_SPOOL_LIMIT", 10_000)
    device = DeviceSide()
    runtime = DeviceRuntime(
        device,
        LogStore(LogConfig(root=tmp_path)),
        apps=("counter",),
        backoff=BackoffPolicy(),
        on_change=lambda uid: None,
        on_finished=lambda uid: None,
        on_event=lambda *args: None,
    )
    uid = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f"
    frames = 30_000
    for offset in range(frames):
        runtime.handle(TaskOutput(f"{uid}/0/0", "stdout", offset, b"x"))
    assert runtime.spooler.unknown_pod_bytes == 10_000
    assert runtime.spooler.dropped_bytes == frames - 10_000
    # The dropped output is acknowledged at once (nobody will store it); the spooled part once
    # it is on disk.
    assert len(device.acked) == frames - 10_000
    await runtime.close()
    assert max(end for _, _, end in device.acked) == frames
