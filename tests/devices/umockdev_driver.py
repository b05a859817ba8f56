"""Drives a umockdev testbed for the udev source test. Runs under Debian's python3 (for gi).

    umockdev-wrapper /usr/bin/python3 tests/devices/umockdev_driver.py VENV_PYTHON

Builds coldplug devices, starts `udev_probe` (the gateway's UdevSource) in the testbed, waits
until it has enumerated them, then plugs and unplugs devices (each `add_device` emits an "add"
uevent) and finally a sentinel the probe stops at. The probe's lines go to stdout unchanged.
Not collected by pytest and never imported by the gateway.
"""

from __future__ import annotations

import os
import subprocess
import sys

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

PICO_SERIAL = "E6614C311B"


def props(**values: str) -> list[str]:
    flat: list[str] = []
    for key, value in values.items():
        flat += [key, value]
    return flat


def add_pico_tty(testbed: object, usb: str, name: str) -> str:
    return testbed.add_device(  # type: ignore[attr-defined,no-any-return]
        "tty",
        name,
        usb,
        [],
        props(
            DEVNAME=f"/dev/{name}",
            WIRELET_DEVICE="1",
            ID_VENDOR_ID="2e8a",
            ID_MODEL_ID="000a",
            ID_SERIAL_SHORT=PICO_SERIAL,
            ID_USB_INTERFACE_NUM="00",
            ID_MM_DEVICE_IGNORE="1",
            DEVLINKS=f"/dev/serial/by-id/usb-Raspberry_Pi_Pico_{PICO_SERIAL}-if00 "
            f"/dev/wirelet/{PICO_SERIAL}-if00",
        ),
    )


def main() -> None:
    python = sys.argv[1]
    testbed = UMockdev.Testbed.new()
    # Coldplug: a Pico (USB device + its tty, opted in by vendor:product) and the host's UART.
    usb = testbed.add_device(
        "usb",
        "usb1",
        None,
        props(idVendor="2e8a", idProduct="000a", serial=PICO_SERIAL),
        props(
            DEVNAME="/dev/bus/usb/001/002",
            DEVTYPE="usb_device",
            WIRELET_DEVICE="1",
            ID_VENDOR_ID="2e8a",
            ID_MODEL_ID="000a",
            ID_SERIAL_SHORT=PICO_SERIAL,
        ),
    )
    pico = add_pico_tty(testbed, usb, "ttyACM0")
    testbed.add_device("tty", "ttyS0", None, [], props(DEVNAME="/dev/ttyS0"))

    env = dict(os.environ, UMOCKDEV_DIR=testbed.get_root_dir(), PYTHONUNBUFFERED="1")
    probe = subprocess.Popen(
        [python, "-m", "tests.devices.udev_probe"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert probe.stdout is not None
    for line in probe.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if '"ready"' in line or '"failed"' in line:
            break
    # Hotplug: a CH340 tagged "wirelet" by the rules (no serial, no wirelet link), an unrelated
    # USB-serial adapter, the Pico unplugged and plugged back in under a new tty name.
    testbed.add_device(
        "tty",
        "ttyUSB0",
        None,
        [],
        props(
            DEVNAME="/dev/ttyUSB0",
            TAGS=":wirelet:",
            CURRENT_TAGS=":wirelet:",
            ID_VENDOR_ID="1a86",
            ID_MODEL_ID="7523",
            ID_PATH="pci-0000:00:14.0-usb-0:3:1.0",
        ),
    )
    testbed.add_device("tty", "ttyUSB1", None, [], props(DEVNAME="/dev/ttyUSB1"))
    testbed.uevent(pico, "remove")
    testbed.remove_device(pico)
    add_pico_tty(testbed, usb, "ttyACM1")
    testbed.add_device("tty", "wirelet-sentinel", None, [], props(DEVNAME="/dev/null"))
    for line in probe.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    sys.exit(probe.wait(timeout=30))


if __name__ == "__main__":
    main()
