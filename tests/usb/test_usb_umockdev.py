"""The USB transport end to end through real libusb: pyusb -> libusb-1.0 -> usbdevfs ioctls.

No USB stack is needed: umockdev's preload library gives the process under test a synthetic
sysfs and /dev/bus/usb node whose ioctls (descriptors, claim, SUBMITURB/REAPURB/DISCARDURB) are
answered by hil/emulator/usb_gadget.py, whose bulk pipes carry an emulated device's byte
stream. See umockdev_env.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.usb.umockdev_env import emulated_device, gadget, umockdev_missing

pytestmark = pytest.mark.skipif(bool(umockdev_missing()), reason=umockdev_missing() or "ok")


def test_wirelet_devices_shakes_hands_over_usb(tmp_path: Path) -> None:
    with emulated_device(tmp_path / "devs", "usb-facts") as pty:
        command = [sys.executable, "-m", "gateway.cli", "devices", "--usb", "cafe:4001", "--json"]
        with gadget(pty, command) as running:
            ready = running.until("ready")
            output = running.stdout.read()
            assert running.process.wait(timeout=30) == 0, output
    # The gadget's own event lines (claimed, released) share stdout with the command's JSON.
    gadget_lines = [line for line in output.splitlines() if line.startswith('{"event"')]
    assert [json.loads(line)["event"] for line in gadget_lines] == ["claimed", "released"]
    rest = [line for line in output.splitlines() if line not in gadget_lines]
    [report] = json.loads("\n".join(rest))
    assert report["path"] == ready["node"] == "/dev/bus/usb/001/002"
    facts = report["facts"]
    assert facts["device_id"] == "usb-facts"
    assert facts["transport"] == "usb"
    assert "flood" in facts["apps"]
    assert report["error"] == ""


@pytest.mark.parametrize("source", ["usb", "udev"])
def test_flood_exactly_once_then_unplug_and_replug_keep_the_session(
    tmp_path: Path, source: str
) -> None:
    """Found by selector (sysfs scan) or by udev (tagged, uevents): the same session throughout."""
    with emulated_device(tmp_path / "devs", "usb-flood") as pty:
        probe = [sys.executable, "-m", "tests.usb.usb_probe"]
        flags = ["--tagged"] if source == "udev" else []
        if source == "udev":
            probe.append("--udev")
        with gadget(pty, probe, *flags) as running:
            running.until("ready")
            up = running.until("up")
            assert up["device_id"] == "usb-flood"
            assert up["transport"] == "usb"
            assert up["port"].startswith("/dev/bus/usb/001/002")
            assert up["key"] == "usb:cafe:4001:WL0001"
            flood = running.until("flood")
            assert flood["bytes"] == 1 << 20
            assert flood["intact"] and flood["gaps"] == 0
            running.until("unplug-me")
            running.send("unplug")
            down = running.until("down")
            assert down["state"] == "down"
            running.until("plug-me")
            running.send("plug")
            plugged = running.until("plugged")
            back = running.until("reconciled")
            # Same session (one per key), same device, at the new bus address; the running task
            # survived the unplug and is adopted, not restarted.
            assert back["sessions"] == 1
            assert back["device_id"] == "usb-flood"
            assert back["port"].startswith(plugged["node"]) and plugged["node"].endswith("/003")
            assert back["surviving"] == ["tick-1"] and back["lost"] == []
            running.until("output-after-replug")
            running.until("done")
            assert running.process.wait(timeout=30) == 0


def test_an_interface_claimed_elsewhere_is_busy_with_the_fix(tmp_path: Path) -> None:
    with emulated_device(tmp_path / "devs", "usb-busy") as pty:
        probe = [sys.executable, "-m", "tests.usb.open_probe", "/dev/bus/usb/001/002"]
        with gadget(pty, probe, "--claimed") as running:
            running.until("ready")
            result = running.until("open")
    assert result["error"] == "DeviceBusy"
    assert "/dev/bus/usb/001/002 is busy: its wirelet interface is claimed by" in result["message"]
    assert "Stop that program" in result["message"]


def test_open_and_close_release_the_interface(tmp_path: Path) -> None:
    with emulated_device(tmp_path / "devs", "usb-open") as pty:
        probe = [sys.executable, "-m", "tests.usb.open_probe", "/dev/bus/usb/001/002"]
        with gadget(pty, probe) as running:
            running.until("ready")
            assert running.until("claimed") == {"event": "claimed", "interface": 0}
            assert running.until("released") == {"event": "released", "interface": 0}
            result = running.until("open")
            assert running.process.wait(timeout=30) == 0
    assert result == {"event": "open", "error": "", "message": "/dev/bus/usb/001/002 (cafe:4001)"}


def test_an_open_given_up_on_releases_the_interface_it_claims_later(tmp_path: Path) -> None:
    """The session's open timeout cancels the open while libusb still waits for the claim; when
    the claim succeeds after all, the interface is released, not leaked (it would stay busy)."""
    with emulated_device(tmp_path / "devs", "usb-slow") as pty:
        probe = [sys.executable, "-m", "tests.usb.open_probe", "/dev/bus/usb/001/002", "0.5"]
        with gadget(pty, probe, "--hold-claims") as running:
            running.until("ready")
            result = running.until("open")
            assert result["error"] == "TransportError"
            assert "open did not finish within 0.5 s" in result["message"]
            running.send("answer-claims")
            assert running.until("claimed") == {"event": "claimed", "interface": 0}
            assert running.until("released") == {"event": "released", "interface": 0}
