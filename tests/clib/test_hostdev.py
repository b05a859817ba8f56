"""The gateway's real DeviceSession against the C device library on a real pseudo-terminal
(wirelet-hostdev, with the emulator's apps): handshake facts, start/output/exit, argv and env,
stop, errors, exec, and a reboot seen as lost tasks."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import DeviceRejected
from gateway.link.events import Reconciled, TaskExited, TaskLost, TaskOutput, TaskStarted
from gateway.link.exec_stream import closing
from gateway.link.session import EventSubscription
from gateway.link.state import SessionState
from tests.link.helpers import WAIT, next_matching, session_for

from .clib import Library, build

DEVICE_ID = "c-hostdev-1"


@pytest.fixture
def hostdev(library: Library, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """wirelet-hostdev serving DEVICE_ID at tmp_path/DEVICE_ID, with fast handshake timers."""
    link = tmp_path / DEVICE_ID
    process = subprocess.Popen(
        [
            str(build() / "wirelet-hostdev"),
            "--link",
            str(link),
            "--device-id",
            DEVICE_ID,
            "--hello-ms",
            "20",
            "--rto-initial-ms",
            "50",
            "--rto-min-ms",
            "10",
            "--rto-max-ms",
            "200",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    tty = process.stdout.readline().strip()
    assert tty.startswith("/dev/pts/") and link.resolve() == Path(tty)
    yield process
    process.terminate()
    assert process.wait(timeout=WAIT) == 0
    assert not link.exists()


async def collect(sub: EventSubscription, task_id: str) -> tuple[bytes, bytes, TaskExited]:
    out, err = bytearray(), bytearray()
    while True:
        event = await sub.get(WAIT)
        if isinstance(event, TaskOutput) and event.task_id == task_id:
            buf = out if event.stream == "stdout" else err
            assert event.offset == len(buf), "output in order without gaps"
            buf += event.data
        elif isinstance(event, TaskExited) and event.task_id == task_id:
            return bytes(out), bytes(err), event


async def test_gateway_session_runs_tasks_on_the_c_device(
    hostdev: subprocess.Popen[str], tmp_path: Path
) -> None:
    async with session_for(tmp_path, DEVICE_ID) as session:
        facts = await session.wait_up(WAIT)
        assert facts.device_id == DEVICE_ID
        assert facts.firmware_name == "wirelet-hostdev"
        assert facts.apps == ("echo", "counter", "forever", "exit", "flood", "reboot")
        assert (facts.vendor, facts.product, facts.serial) == ("wirelet", "hostdev", "0001")
        assert facts.task_slots == 4
        sub = session.subscribe()

        argv = ["echo", "two words", "ünïcödé", "", "--flag=a=b"]
        env = {"PLAIN": "x", "SPACES": "a b c", "EQUALS": "k=v", "EMPTY": ""}
        await session.start_task("t-echo", "echo", argv, env)
        out, _, exited = await collect(sub, "t-echo")
        lines = out.decode().splitlines()
        assert lines[0] == "argv: " + " ".join(argv)
        assert lines[1:] == [f"{k}={v}" for k, v in sorted(env.items())]
        assert (exited.exit_code, exited.reason) == (0, "completed")

        await session.start_task("t-exit", "exit", ["exit", "3", "bye"])
        _, err, exited = await collect(sub, "t-exit")
        assert (err, exited.exit_code, exited.reason, exited.stderr_end) == (
            b"bye\n",
            3,
            "error",
            4,
        )

        await session.start_task("t-count", "counter", ["counter", "5", "1"])
        out, _, exited = await collect(sub, "t-count")
        assert out == b"1\n2\n3\n4\n5\n" and exited.stdout_end == len(out)

        await session.start_task("t-flood", "flood", ["flood", "20000"])
        out, _, exited = await collect(sub, "t-flood")
        assert out == b"".join(b"%015d\n" % k for k in range(1250)) and exited.exit_code == 0

        await session.start_task("t-forever", "forever", ["forever", "5"])
        await next_matching(sub, lambda e: isinstance(e, TaskOutput))
        assert [t.task_id for t in await session.list_tasks() if t.running] == ["t-forever"]
        await session.stop_task("t-forever", grace_s=5)
        exited_event = await next_matching(sub, lambda e: isinstance(e, TaskExited))
        assert isinstance(exited_event, TaskExited)
        assert (exited_event.exit_code, exited_event.reason) == (143, "stopped")

        with pytest.raises(DeviceRejected) as rejected:
            await session.start_task("t1", "no-such-app")
        assert rejected.value.code == "NO_SUCH_APP"
        with pytest.raises(DeviceRejected) as rejected:
            await session.stop_task("nope", 1)
        assert rejected.value.code == "NO_SUCH_TASK"

        code, stdout, stderr = await session.exec(["echo", "hi", "there"])
        assert (code, stdout, stderr) == (0, b"hi there\n", b"")
        code, stdout, stderr = await session.exec(["ls"])
        assert (code, stderr) == (127, b"ls: not found\n")
        # Streamed exec (PROTOCOL.md section 9): more than one frame, whole, through the gateway.
        stream = session.exec_stream(["seq", "200"])
        async with closing(stream) as chunks:
            streamed = b"".join([c.data async for c in chunks if c.stream == "stdout"])
        assert streamed == b"".join(b"%d\n" % k for k in range(1, 201))
        assert stream.end is not None and (stream.end.exit_code, stream.end.truncated) == (0, False)
        assert session.state is SessionState.UP
        sub.close()


async def test_reboot_app_loses_the_running_tasks(
    hostdev: subprocess.Popen[str], tmp_path: Path
) -> None:
    async with session_for(tmp_path, DEVICE_ID) as session:
        first = await session.wait_up(WAIT)
        sub = session.subscribe()
        await session.start_task("other", "forever", ["forever", "10"])
        assert await next_matching(sub, lambda e: isinstance(e, TaskStarted)) == TaskStarted(
            "other"
        )
        await session.start_task("boom", "reboot", ["reboot", "5"])
        lost: dict[str, str] = {}
        while len(lost) < 2:
            event = await next_matching(sub, lambda e: isinstance(e, TaskLost))
            assert isinstance(event, TaskLost)
            lost[event.task_id] = event.reason
        assert lost == {"other": "device rebooted", "boom": "device rebooted"}
        reconciled = await next_matching(sub, lambda e: isinstance(e, Reconciled))
        assert isinstance(reconciled, Reconciled) and reconciled.rebooted
        assert session.facts is not None and session.facts.boot_id != first.boot_id
        assert await session.list_tasks() == []
        sub.close()
