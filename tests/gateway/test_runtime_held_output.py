"""Output held for pods not known yet stays bounded in memory, however small the frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.link.events import TaskInfo, TaskOutput
from gateway.logs.config import LogConfig
from gateway.logs.store import LogStore
from gateway.runtime import device_runtime
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime


class DeviceSide:
    """The device session as the runtime sees it; records acknowledgements."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, str, int]] = []

    async def start_task(
        self, task_id: str, app: str, argv: Sequence[str], env: Sequence[tuple[str, str]]
    ) -> None:
        raise AssertionError("not used")

    async def stop_task(self, task_id: str, grace_s: float) -> None:
        raise AssertionError("not used")

    async def list_tasks(self) -> Sequence[TaskInfo]:
        return []

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        self.acked.append((task_id, stream, offset))


async def test_one_byte_frames_cannot_fill_memory_under_the_byte_limit(tmp_path: Path) -> None:
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
    frames = 100_000
    for offset in range(frames):
        runtime.handle(TaskOutput(f"{uid}/0/0", "stdout", offset, b"x"))
    held = sum(len(events) for events in runtime.held.values())
    limit = device_runtime.HELD_OUTPUT_LIMIT // device_runtime.HELD_EVENT_COST
    assert 0 < held <= limit < frames
    assert runtime.held_bytes <= device_runtime.HELD_OUTPUT_LIMIT
    assert len(device.acked) == frames - held  # the rest is dropped and acknowledged
    await runtime.close()
