"""An SshHost against a real sshd, with a consumer that stands in for the runtime's persistence:
it keeps every output chunk by offset and acknowledges it (or not, when told to hold)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import config_from_mapping
from gateway.link.events import SessionEvent, TaskExited, TaskLost, TaskOutput
from gateway.ssh.host import SshHost
from tests.ssh.sshd import Sshd

WAIT = 30.0  # bound for what should happen soon; reached only when broken

# Short timers so a dead connection is noticed at once and reconnects come quickly.
FAST_SSH: dict[str, Any] = {
    "poll_interval_s": 0.05,
    "keepalive_interval_s": 0.5,
    "keepalive_count": 2,
    "connect_timeout_s": 5.0,
    "command_timeout_s": 10.0,
    "reconnect_initial_s": 0.05,
    "reconnect_max_s": 0.3,
}


@dataclass
class Consumer:
    host: SshHost
    hold: bool = False  # True: do not acknowledge (a gateway that dies before its disk write)
    events: list[SessionEvent] = field(default_factory=list)
    output: dict[tuple[str, str], bytearray] = field(default_factory=dict)
    starts: dict[tuple[str, str], int] = field(default_factory=dict)  # offset of output[key][0]
    problems: list[tuple[str, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, event: SessionEvent) -> None:
        self.events.append(event)
        if isinstance(event, TaskOutput):
            key = (event.task_id, event.stream)
            start = self.starts.setdefault(key, event.offset)  # a restart reads on from here
            buf = self.output.setdefault(key, bytearray())
            # The runtime's InstanceLog drops what it already has by offset; so does this.
            have = start + len(buf)
            assert event.offset <= have, f"gap in {key}: {event.offset} after {have}"
            if event.end > have:
                buf += event.data[have - event.offset :]
            if not self.hold:
                self.host.ack_output(event.task_id, event.stream, event.end)
        self._changed.set()

    def text(self, task_id: str, stream: str = "stdout") -> str:
        return bytes(self.output.get((task_id, stream), b"")).decode()

    async def wait(self, what: str, check: Callable[[], Any], within: float = WAIT) -> Any:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if result:
                    return result
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()
        raise AssertionError(what)  # pragma: no cover

    async def exited(self, task_id: str) -> TaskExited | TaskLost:
        def find() -> TaskExited | TaskLost | None:
            for event in self.events:
                if isinstance(event, TaskExited | TaskLost) and event.task_id == task_id:
                    return event
            return None

        result: TaskExited | TaskLost = await self.wait(f"exit of {task_id}", find)
        return result


def ssh_config(sshd: Sshd, **overrides: Any) -> Any:
    settings = {**FAST_SSH, **overrides.pop("ssh", {})}
    return config_from_mapping(
        {"ssh": {"hosts": [sshd.host_settings(**overrides)], **settings}}, "test"
    ).ssh


@contextlib.asynccontextmanager
async def ssh_host(sshd: Sshd, *, hold: bool = False, **overrides: Any) -> AsyncIterator[Consumer]:
    config = ssh_config(sshd, **overrides)
    consumer: Consumer
    host = SshHost(
        config.hosts[0],
        config,
        on_problem=lambda reason, message: consumer.problems.append((reason, message)),
    )
    consumer = Consumer(host, hold=hold)
    events = host.subscribe()

    async def pump() -> None:
        async for event in events:
            consumer.take(event)

    task = asyncio.create_task(pump(), name="ssh test consumer")
    host.start()
    try:
        yield consumer
    finally:
        await host.close()
        await task
