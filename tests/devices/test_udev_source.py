"""The udev source: which devices it serves, under which key, through coldplug and hotplug.

The hotplug test runs the real `UdevSource` (pyudev over libudev, netlink monitor driven by the
asyncio loop) inside a umockdev testbed: umockdev's preload library gives libudev a synthetic
sysfs and delivers the testbed's add/remove uevents to the monitor's socket, no kernel module or
udevd needed. The testbed is driven from Debian's python3 (the GObject bindings live there), the
source runs in this venv's python: see umockdev_driver.py and udev_probe.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.devices.sources.udev import classify

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
KEY = "/dev/wirelet/E6614C311B-if00"


def umockdev_missing() -> str:
    if shutil.which("umockdev-wrapper") is None:
        return "umockdev is not installed (make system-deps installs it)"
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return "python3-gi / gir1.2-umockdev-1.0 missing (make system-deps installs them)"
    return ""


def run_scenario() -> list[dict[str, Any]]:
    result = subprocess.run(
        [
            "umockdev-wrapper",
            SYSTEM_PYTHON,
            str(ROOT / "tests" / "devices" / "umockdev_driver.py"),
            sys.executable,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(bool(umockdev_missing()), reason=umockdev_missing() or "ok")
def test_coldplug_hotplug_and_replug_under_umockdev() -> None:
    events = run_scenario()
    ready = events.index({"event": "ready"})
    cold, hot = events[:ready], events[ready + 1 :]
    added = [e for e in cold if e["event"] == "added"]
    # Coldplug: the opted-in Pico's tty, keyed by its /dev/wirelet link, opened at its node.
    assert added == [{"event": "added", "key": KEY, "path": "/dev/ttyACM0", "follow": False}]
    ignored = {e["where"]: e["why"] for e in cold if e["event"] == "ignored"}
    assert "not tagged" in ignored["/sys/devices/ttyS0"]
    assert "USB transport" in ignored["/sys/devices/usb1"]
    assert hot == [
        # A tagged CH340 without a serial: keyed by its physical port.
        {
            "event": "added",
            "key": "udev:path:pci-0000:00:14.0-usb-0:3:1.0",
            "path": "/dev/ttyUSB0",
            "follow": False,
        },
        {
            "event": "ignored",
            "where": "/sys/devices/ttyUSB1",
            "why": "not tagged 'wirelet' and no WIRELET_DEVICE=1",
        },
        {"event": "removed", "key": KEY},
        # Back under a new tty name: the same key, so the same session and node.
        {"event": "added", "key": KEY, "path": "/dev/ttyACM1", "follow": False},
        {
            "event": "ignored",
            "where": "/sys/devices/wirelet-sentinel",
            "why": "not tagged 'wirelet' and no WIRELET_DEVICE=1",
        },
    ]


def test_classify_prefers_the_wirelet_link_then_serial_then_path() -> None:
    props = {"WIRELET_DEVICE": "1", "ID_VENDOR_ID": "303a", "ID_MODEL_ID": "1001"}
    linked = classify(
        "/sys/x/ttyACM0",
        "tty",
        "/dev/ttyACM0",
        [],
        props
        | {"DEVLINKS": "/dev/serial/by-id/a /dev/wirelet/AB12-if00", "ID_SERIAL_SHORT": "AB12"},
    )
    assert linked.found is not None and linked.found.key == "/dev/wirelet/AB12-if00"
    serial = classify(
        "/sys/x/ttyACM0",
        "tty",
        "/dev/ttyACM0",
        [],
        props | {"ID_SERIAL_SHORT": "AB12", "ID_USB_INTERFACE_NUM": "00"},
    )
    assert serial.found is not None and serial.found.key == "udev:303a:1001:AB12:00"
    bare = classify("/sys/x/ttyACM0", "tty", "/dev/ttyACM0", ["wirelet"], {})
    assert bare.found is not None and bare.found.key == "udev:path:/sys/x/ttyACM0"


def test_classify_ignores_untagged_nodeless_and_interfaces() -> None:
    assert classify("/sys/a", "tty", "/dev/ttyS0", [], {}).found is None
    assert classify("/sys/a", "tty", None, ["wirelet"], {}).why == "no device node"
    interface = classify("/sys/a", "usb", "/dev/x", ["wirelet"], {"DEVTYPE": "usb_interface"})
    assert interface.found is None
