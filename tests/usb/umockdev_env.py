"""Running things under an emulated raw-USB device (hil/emulator/usb_gadget.py) for the tests.

An emulated device (`python -m hil.emulator`, on a pty) plays the firmware; the gadget, under
`umockdev-wrapper` and Debian's python3 (umockdev's GObject bindings are not in the venv),
presents it as a USB device with a wirelet bulk interface and runs the command under test in its
testbed, so the command's pyusb -> libusb -> usbdevfs calls are answered by the gadget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def umockdev_missing() -> str:
    """Why the umockdev USB tests cannot run here, or "" when they can."""
    if shutil.which("umockdev-wrapper") is None:
        return "umockdev is not installed (make system-deps installs it)"
    check = (
        "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev; "
        "import ctypes; ctypes.CDLL('libusb-1.0.so.0')"
    )
    probe = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, check=False)
    if probe.returncode != 0:
        return "python3-gi, gir1.2-umockdev-1.0 or libusb-1.0-0 missing (make system-deps)"
    return ""


@contextmanager
def emulated_device(directory: Path, device_id: str) -> Iterator[str]:
    """One emulated device on a pty; yields the pty path (DIR/<device-id> links to it)."""
    count = 1
    directory.mkdir(parents=True, exist_ok=True)
    profile = directory.parent / f"{directory.name}-profile.json"
    profile.write_text(json.dumps({"device_id": device_id}))
    command = [sys.executable, "-m", "hil.emulator", "--devices", "1", "--dir", str(directory)]
    process = subprocess.Popen(
        [*command, "--profile", str(profile)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(list(directory.iterdir())) < count:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.05)
        yield os.path.realpath(directory / device_id)
    finally:
        process.terminate()
        process.wait(timeout=10)


class Gadget:
    """A running usb_gadget with its command; read its JSON lines, send it plug/unplug."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    @property
    def stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def next_event(self) -> dict[str, Any]:
        for line in self.stdout:
            if line.startswith("{"):
                event: dict[str, Any] = json.loads(line)
                self.events.append(event)
                return event
        raise AssertionError(f"gadget ended; events so far: {self.events}")

    def until(self, name: str) -> dict[str, Any]:
        while True:
            event = self.next_event()
            assert event.get("event") != "failed", event
            if event.get("event") == name:
                return event

    def send(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()


@contextmanager
def gadget(
    pty: str, command: Sequence[str], *extra: str, stderr: IO[str] | None = None
) -> Iterator[Gadget]:
    process = subprocess.Popen(
        [
            "umockdev-wrapper",
            SYSTEM_PYTHON,
            "-m",
            "hil.emulator.usb_gadget",
            "--pty",
            pty,
            *extra,
            "--",
            *command,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        yield Gadget(process)
    finally:
        if process.poll() is None:
            process.send_signal(15)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
