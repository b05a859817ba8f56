"""Helpers for the log store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.logs import ContainerLogWriter, LogConfig, LogSource

BASE_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


class FakeClock:
    """A nanosecond clock the test advances by hand, so timestamps are predictable."""

    def __init__(self, start: int = BASE_NS) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)


async def running_forever() -> bool:
    return True


async def stopped() -> bool:
    return False


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    out = bytearray()
    async for chunk in chunks:
        out += chunk
    return bytes(out)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def container_dir(tmp_path: Path) -> Path:
    return tmp_path / "default_pod_uid-1" / "app"


@pytest.fixture
def make_writer(container_dir: Path, clock: FakeClock) -> Callable[..., ContainerLogWriter]:
    def make(restart: int = 0, **config: object) -> ContainerLogWriter:
        settings = LogConfig(root=container_dir.parent.parent, **config)  # type: ignore[arg-type]
        return ContainerLogWriter(container_dir, restart, settings, clock=clock)

    return make


def source(container_dir: Path, restart: int = 0, *, running: bool = False) -> LogSource:
    return LogSource(container_dir, restart, running_forever if running else stopped)
