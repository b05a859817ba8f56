"""Raw USB devices chosen in config (`[devices] usb = ["cafe:4001"]`, `wirelet run --usb`).

Finding a device needs no open and no permission: sysfs has every USB device's vendor, product,
serial, bus number and address (`/sys/bus/usb/devices/<bus>-<port>[.<port>...]`). The source
re-reads it every scan interval, reports each matching device under a stable key (its serial, or
the physical port where it has none) at its current `/dev/bus/usb/BBB/DDD` node, and reports it
removed when it is gone. A re-plug gets a new address, and the same key: the same session and
node. With udev running, `devices.udev = true` reports tagged devices as they come and go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.devices.found import DeviceSink, FoundDevice
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

SYSFS_USB = "/sys/bus/usb/devices"
SCAN_INTERVAL_S = 1.0
# A bus path: bus number, then the hub port numbers from the root ("1-1.2", "3-4").
_PORT_PATH = re.compile(r"^\d+-\d+(\.\d+)*$")
_VID_PID = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})(?::(.+))?$")
_NODE = re.compile(r"^/dev/bus/usb/(\d{1,3})/(\d{1,3})$")
SELECTOR_FORMS = (
    "VID:PID, VID:PID:SERIAL, serial=SERIAL, a bus path like 1-1.2, or /dev/bus/usb/BBB/DDD"
)


@dataclass(frozen=True, slots=True)
class UsbDeviceInfo:
    """One attached USB device as sysfs describes it."""

    port_path: str  # "1-1.2": stable while it stays in the same socket
    bus: int
    address: int
    vendor: str  # 4 lower-case hex digits
    product: str
    serial: str

    @property
    def node(self) -> str:
        return f"/dev/bus/usb/{self.bus:03d}/{self.address:03d}"

    @property
    def key(self) -> str:
        """Survives re-plugs (new address): the serial, or the physical port without one."""
        if self.serial:
            return f"usb:{self.vendor}:{self.product}:{self.serial}"
        return f"usb:path:{self.port_path}"


@dataclass(frozen=True, slots=True)
class UsbSelector:
    """Which USB devices to serve; parsed from config or `--usb`."""

    text: str
    vendor: str = ""
    product: str = ""
    serial: str = ""
    port_path: str = ""
    bus: int = 0
    address: int = 0

    @classmethod
    def parse(cls, text: str, where: str = "--usb") -> UsbSelector:
        value = text.strip()
        if match := _VID_PID.match(value):
            return cls(text, match.group(1).lower(), match.group(2).lower(), match.group(3) or "")
        if value.startswith("serial=") and len(value) > len("serial="):
            return cls(text, serial=value[len("serial=") :])
        if _PORT_PATH.match(value):
            return cls(text, port_path=value)
        if match := _NODE.match(value):
            return cls(text, bus=int(match.group(1)), address=int(match.group(2)))
        raise ConfigError(
            f"{where}: {text!r} is not a USB device selector; expected {SELECTOR_FORMS}"
        )

    def matches(self, device: UsbDeviceInfo) -> bool:
        if self.vendor and (device.vendor, device.product) != (self.vendor, self.product):
            return False
        if self.serial and device.serial != self.serial:
            return False
        if self.port_path and device.port_path != self.port_path:
            return False
        return not self.bus or (device.bus, device.address) == (self.bus, self.address)


def _attribute(directory: str, name: str) -> str:
    try:
        with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def list_usb_devices(sysfs: str = SYSFS_USB) -> list[UsbDeviceInfo]:
    """Every USB device (not interfaces, not root hubs) that sysfs lists now."""
    try:
        names = sorted(os.listdir(sysfs))
    except OSError:
        return []
    found: list[UsbDeviceInfo] = []
    for name in names:
        if not _PORT_PATH.match(name):
            continue  # "usb1" root hubs and "1-1:1.0" interfaces
        directory = os.path.join(sysfs, name)
        bus, address = _attribute(directory, "busnum"), _attribute(directory, "devnum")
        vendor, product = _attribute(directory, "idVendor"), _attribute(directory, "idProduct")
        if not (bus.isdigit() and address.isdigit() and vendor and product):
            continue  # half-written while the device enumerates; the next scan sees it
        serial = _attribute(directory, "serial")
        found.append(UsbDeviceInfo(name, int(bus), int(address), vendor, product, serial))
    return found


class UsbSource:
    """Reports the USB devices matching any of the selectors, as they come and go."""

    name = "usb"

    def __init__(
        self,
        selectors: Sequence[UsbSelector],
        scan_interval_s: float = SCAN_INTERVAL_S,
        sysfs: str = SYSFS_USB,
    ) -> None:
        self.selectors = tuple(selectors)
        self.scan_interval_s = scan_interval_s
        self.sysfs = sysfs
        self.ready = asyncio.Event()
        self._present: dict[str, str] = {}  # key -> node
        # Nodes seen without a serial in the last scan (see `scan`).
        self._serial_less: set[str] = set()

    def scan(self, sink: DeviceSink, devices: Sequence[UsbDeviceInfo]) -> None:
        seen: dict[str, UsbDeviceInfo] = {}
        serial_less: set[str] = set()
        for device in devices:
            if not any(selector.matches(device) for selector in self.selectors):
                continue
            if not device.serial:
                # sysfs writes a new device's attributes one by one: a scan may see it before
                # its `serial`. Keyed by port then, it would get a second session once the
                # serial shows; so a device without one is taken only when it still has none
                # in the next scan (one scan interval later).
                serial_less.add(device.node)
                if device.node not in self._serial_less and device.key not in self._present:
                    continue
            seen.setdefault(device.key, device)
        self._serial_less = serial_less
        for key in [k for k in self._present if k not in seen]:
            del self._present[key]
            sink.device_removed(key, self.name)
        for key, device in seen.items():
            if self._present.get(key) == device.node:
                continue
            self._present[key] = device.node
            details = {
                "vendor": device.vendor,
                "product": device.product,
                "serial": device.serial,
                "port_path": device.port_path,
            }
            sink.device_added(
                FoundDevice(
                    key, device.node, self.name, follow_link=False, details=details, transport="usb"
                )
            )

    async def run(self, sink: DeviceSink) -> None:
        while True:
            devices = await asyncio.to_thread(list_usb_devices, self.sysfs)
            self.scan(sink, devices)
            self.ready.set()
            await asyncio.sleep(self.scan_interval_s)
