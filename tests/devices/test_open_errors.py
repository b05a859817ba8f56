"""A device that cannot be opened says why and what to do, and is retried.

Permission denied: the tests run as root, which ignores permission bits, so the open runs in a
forked child that dropped to `nobody` (a real EACCES from the kernel, through the real serial
transport). Busy: another process holds the port with an exclusive lock, as pyserial (and so a
second gateway, or a terminal program) takes it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pwd
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import timers_from_config
from gateway.devices.manager import DeviceManager
from gateway.devices.port import DeviceBusy, DevicePermissionDenied, DevicePort
from gateway.link.events import SessionStateChanged
from gateway.link.session import DeviceSession
from gateway.link.state import SessionState
from gateway.transport.serial import SerialSettings
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile

WAIT = 30.0  # bound for what should happen soon; reached only when broken
FAST = {
    "heartbeat_interval": 0.2,
    "link_lost_timeout": 1.0,
    "hello_interval": 0.05,
    "handshake_timeout": 2.0,
    "reconnect_initial_s": 0.05,
    "reconnect_max_s": 0.3,
}
HOLDER = """
import serial, sys
port = serial.Serial(sys.argv[1], exclusive=True)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pty() -> Iterator[str]:
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def _open_as_nobody(path: str) -> tuple[str, str]:
    """Fork, drop to nobody, open `path` through DevicePort; (exception class, message)."""
    nobody = pwd.getpwnam("nobody")
    # Modules the child will need, imported while we may still read the interpreter's tree.
    for module in ("concurrent.futures.thread", "serial_asyncio_fast", "grp"):
        importlib.import_module(module)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        result = "none\nopened"
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

            async def attempt() -> None:
                transport = await DevicePort("k", path, SerialSettings()).open()
                await transport.close()

            asyncio.run(attempt())
        except BaseException as exc:
            result = f"{type(exc).__name__}\n{exc}"
        finally:
            os.write(write_end, result.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read().decode()
    os.waitpid(pid, 0)
    kind, _, message = data.partition("\n")
    return kind, message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_permission_denied_names_the_group_and_the_fix(pty: str) -> None:
    os.chmod(pty, 0o600)  # root's only, as a tty without the wirelet rules is
    kind, message = _open_as_nobody(pty)
    assert kind == DevicePermissionDenied.__name__
    assert f"permission denied opening {pty}" in message
    assert "usermod -aG wirelet nobody" in message
    assert "udev/README.md" in message


async def _hold(path: str) -> asyncio.subprocess.Process:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert (await asyncio.wait_for(holder.stdout.readline(), WAIT)).strip() == b"held"
    return holder


async def _release(holder: asyncio.subprocess.Process) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    await asyncio.wait_for(holder.wait(), WAIT)


async def test_busy_port_names_the_process_holding_it(pty: str) -> None:
    holder = await _hold(pty)
    try:
        with pytest.raises(DeviceBusy) as caught:
            await DevicePort("k", pty, SerialSettings()).open()
    finally:
        await _release(holder)
    message = str(caught.value)
    assert f"{pty} is busy: held by pid {holder.pid}" in message
    assert "ID_MM_DEVICE_IGNORE" in message


async def test_busy_device_is_reported_once_retried_and_served_when_freed(
    tmp_path: Path,
) -> None:
    session_config, _, _ = timers_from_config(FAST)
    problems: list[tuple[str, str, str]] = []
    sessions: dict[str, DeviceSession] = {}

    def started(key: str, session: DeviceSession) -> None:
        sessions[key] = session
        session.start()

    async with EmulatedFleet(
        tmp_path, [DeviceProfile(device_id="busy-0")], control_socket=False
    ) as fleet:
        device = fleet.device("busy-0")
        holder = await _hold(device.tty)
        manager = DeviceManager(
            ports=(device.tty,),
            dirs=(),
            settings=SerialSettings(),
            session_config=session_config,
            on_session=started,
            on_problem=lambda *p: problems.append(p),
        )
        run = asyncio.create_task(manager.run(), name="device discovery")
        try:
            await manager.wait_ready()
            session = sessions[device.tty]
            events = session.subscribe()
            busy_attempts = 0
            while busy_attempts < 3:  # retried with back-off, failing the same way
                event = await events.get(WAIT)
                if isinstance(event, SessionStateChanged) and event.new is SessionState.DOWN:
                    assert "is busy" in event.reason
                    busy_attempts += 1
            events.close()
            assert isinstance(session.last_error, DeviceBusy)
            await _release(holder)
            await session.wait_up(WAIT)
            # Reported once, not per attempt; then once more as resolved.
            assert [(key, reason) for key, reason, _ in problems] == [
                (device.tty, "DeviceBusy"),
                (device.tty, ""),
            ]
            assert f"held by pid {holder.pid} (python" in problems[0][2]
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await manager.close()


def test_holders_leaves_out_this_process(pty: str) -> None:
    from gateway.devices.port import holders

    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    try:
        assert not any(h.startswith(f"pid {os.getpid()} ") for h in holders(pty))
    finally:
        os.close(fd)
