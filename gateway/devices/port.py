"""Where one device is now, and opening it with errors that say what to do.

Sources update a `DevicePort` (present at this path / gone); the device's session opens it
through `DevicePort.open` on every (re)connect. While the device is unplugged the open waits for
it to come back (bounded, below the session's open timeout), so a re-plug is served at once
instead of after the next back-off delay.

Opening can fail in ways a user must fix: permission denied (the gateway's user is not in the
device's group) and busy (another process holds the port). Those become
`DevicePermissionDenied` / `DeviceBusy` with the cause and the fix in the message; the session
retries them with its back-off, and the manager reports each new problem once.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable

from gateway.errors import PortBusy, PortNotFound, TransportError
from gateway.transport.base import Transport
from gateway.transport.serial import SerialSettings, SerialTransport
from gateway.transport.usb import UsbTransport

# How long one open waits for an unplugged device to come back before reporting it absent (the
# session then backs off and opens again). Long, so that a re-plug almost always finds an open
# already waiting and is served at once rather than after a back-off delay; the manager adds it
# to the session's open timeout. The real open is still bounded by the configured open timeout.
ABSENT_WAIT_S = 60.0
RULES_HINT = "see udev/README.md"
GROUP = "wirelet"


class DeviceOpenProblem(TransportError):
    """Opening failed for a reason a person has to fix; `reason` is a CamelCase event reason."""

    reason = "DeviceOpenFailed"


class DevicePermissionDenied(DeviceOpenProblem):
    reason = "DevicePermissionDenied"


class DeviceBusy(DeviceOpenProblem, PortBusy):
    reason = "DeviceBusy"


class DeviceAbsent(PortNotFound):
    """The device is unplugged; the open waited for it and it did not come back (yet)."""


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _owner(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "?"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    return f"{stat.filemode(st.st_mode)} {user}:{group}"


def holders(path: str) -> list[str]:
    """Other processes with `path` open, as "pid N (name)", from /proc (those we may see)."""
    target = os.path.realpath(path)
    found: list[str] = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    break
            except OSError:
                continue
        else:
            continue
        try:
            with open(f"/proc/{pid}/comm") as fh:
                name = fh.read().strip()
        except OSError:
            name = "?"
        found.append(f"pid {pid} ({name})")
    return found


def explain_open_error(path: str, error: TransportError) -> TransportError:
    """Turn a transport's open failure into one that names the cause and the fix."""
    cause = error.__cause__
    code = getattr(cause, "errno", None)
    text = str(cause or error)
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        user = _user()
        return DevicePermissionDenied(
            f"permission denied opening {path} ({_owner(path)}): the gateway runs as {user!r}, "
            f"which may not open it. Install udev/60-wirelet.rules (group {GROUP!r}, mode 0660) "
            f"and add the user to the group: `usermod -aG {GROUP} {user}`, then restart the "
            f"gateway; {RULES_HINT}"
        )
    if isinstance(error, PortBusy):
        held = holders(path)
        by = ", ".join(held) if held else "another process (not visible to this user)"
        if path.startswith("/dev/bus/usb/"):
            return DeviceBusy(
                f"{path} is busy: its wirelet interface is claimed by {by}. Stop that program "
                f"(another gateway, a flashing tool); docs/usb.md"
            )
        return DeviceBusy(
            f"{path} is busy: held by {by}. Stop that process; if it is ModemManager, install "
            f"udev/60-wirelet.rules, which sets ID_MM_DEVICE_IGNORE=1; {RULES_HINT}"
        )
    return error


ProblemCallback = Callable[[DeviceOpenProblem | None], None]


class DevicePort:
    """One device's current location. Sources call `appeared`/`vanished`; sessions `open`."""

    def __init__(
        self,
        key: str,
        path: str,
        settings: SerialSettings,
        *,
        follow_link: bool = True,
        transport: str = "serial",
        absent_wait_s: float = ABSENT_WAIT_S,
        open_timeout_s: float = 5.0,
        on_result: ProblemCallback | None = None,
    ) -> None:
        self.key = key
        self.path = path
        self.follow_link = follow_link
        self.transport = transport  # "serial" or "usb" (path is then a /dev/bus/usb node)
        self.settings = settings
        self.absent_wait_s = absent_wait_s
        self.open_timeout_s = open_timeout_s
        self.on_result = on_result
        self.present = asyncio.Event()
        self.present.set()
        self.opened_at: str | None = None  # the tty opened last

    def appeared(self, path: str, *, follow_link: bool = True) -> None:
        self.path = path
        self.follow_link = follow_link
        self.present.set()

    def vanished(self) -> None:
        self.present.clear()

    def target(self) -> str:
        return os.path.realpath(self.path) if self.follow_link else self.path

    async def open(self) -> Transport:
        if not self.present.is_set():
            try:
                async with asyncio.timeout(self.absent_wait_s):
                    await self.present.wait()
            except TimeoutError:
                raise DeviceAbsent(
                    f"{self.key}: device unplugged; waiting for it to come back"
                ) from None
        target = self.target()
        try:
            async with asyncio.timeout(self.open_timeout_s):
                transport: Transport
                if self.transport == "usb":
                    transport = await UsbTransport.open(target)
                else:
                    transport = await SerialTransport.open(target, self.settings)
        except TimeoutError:
            raise TransportError(
                f"{target}: open did not finish within {self.open_timeout_s} s"
            ) from None
        except TransportError as exc:
            error = explain_open_error(target, exc)
            if self.on_result is not None and isinstance(error, DeviceOpenProblem):
                self.on_result(error)
            if error is exc:
                raise
            raise error from exc
        self.opened_at = target
        if self.on_result is not None:
            self.on_result(None)
        return transport
