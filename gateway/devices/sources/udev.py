"""The udev source: devices tagged by `udev/60-wirelet.rules`, at start and as they come and go.

The monitor listens on the `udev` netlink source (events after udevd ran the rules, so the tag,
the properties and the `/dev/wirelet/` symlink are there) and is driven from the asyncio loop
through `loop.add_reader` on its socket. Start order avoids the classic race: the monitor starts
first, then the already-present devices are enumerated (coldplug), then queued events are read;
everything is de-duplicated by sys path, so a device seen by both is reported once.

A device is ours when udev tagged it `wirelet` or set `WIRELET_DEVICE=1` (the property the rules
set, and the one a user sets for any other board). The subsystem filter runs in the kernel
socket filter; the ownership check runs here, which also works where tags are not kept (umockdev).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.devices.found import DeviceSink, FoundDevice

log = logging.getLogger(__name__)

TAG = "wirelet"
PROPERTY = "WIRELET_DEVICE"
LINK_DIR = "/dev/wirelet/"
SUBSYSTEMS = ("tty", "usb")
# ID_USB_INTERFACES entry (class, subclass, protocol in hex) of a wirelet raw-USB interface.
USB_INTERFACE = "ff5701"


@dataclass(frozen=True, slots=True)
class UdevMatch:
    """The decision about one udev device: ours or not, and if ours, under which key."""

    found: FoundDevice | None
    why: str = ""  # why it is not ours


def is_ours(tags: Iterable[str], properties: Mapping[str, str]) -> bool:
    return TAG in set(tags) or properties.get(PROPERTY) == "1"


def classify(
    sys_path: str,
    subsystem: str,
    device_node: str | None,
    tags: Iterable[str],
    properties: Mapping[str, str],
) -> UdevMatch:
    """Pure mapping from a udev device's facts to what the gateway should serve."""
    if not is_ours(tags, properties):
        return UdevMatch(None, f"not tagged {TAG!r} and no {PROPERTY}=1")
    if not device_node:
        return UdevMatch(None, "no device node")
    if subsystem == "usb":
        if properties.get("DEVTYPE") != "usb_device":
            return UdevMatch(None, "a USB interface, not the device")
        return classify_usb(sys_path, device_node, properties)
    if subsystem != "tty":
        return UdevMatch(None, f"subsystem {subsystem!r} is not served")
    if USB_INTERFACE in properties.get("ID_USB_INTERFACES", "").split(":"):
        # A composite board: the link is on its raw interface, this tty is its console.
        return UdevMatch(
            None, f"its USB device has a wirelet interface ({USB_INTERFACE}): served raw"
        )
    links = properties.get("DEVLINKS", "").split()
    ours = sorted(link for link in links if link.startswith(LINK_DIR))
    vendor = properties.get("ID_VENDOR_ID") or properties.get("ID_USB_VENDOR_ID", "")
    product = properties.get("ID_MODEL_ID") or properties.get("ID_USB_MODEL_ID", "")
    serial = properties.get("ID_SERIAL_SHORT") or properties.get("ID_USB_SERIAL_SHORT", "")
    interface = properties.get("ID_USB_INTERFACE_NUM", "")
    if ours:
        key = ours[0]  # named from the serial by the rules: stable across re-plugs
    elif serial:
        key = f"udev:{vendor}:{product}:{serial}:{interface}"
    else:
        # No serial: the physical port is the best stable identity udev has.
        key = f"udev:path:{properties.get('ID_PATH') or sys_path}"
    details = {"vendor": vendor, "product": product, "serial": serial, "sys_path": sys_path}
    # Open the device node itself: udev just told us where it is now.
    return UdevMatch(FoundDevice(key, device_node, "udev", follow_link=False, details=details))


def classify_usb(sys_path: str, device_node: str, properties: Mapping[str, str]) -> UdevMatch:
    """A tagged USB device is served raw only if it has a wirelet interface (PROTOCOL.md, USB
    binding); a tagged CDC board is served through its tty instead, which udev reports too."""
    interfaces = properties.get("ID_USB_INTERFACES", "")
    if USB_INTERFACE not in interfaces.split(":"):
        return UdevMatch(
            None,
            f"no wirelet interface ({USB_INTERFACE}) among {interfaces or 'its interfaces'}: "
            "served through its tty if it has one, not through the USB transport",
        )
    vendor = properties.get("ID_VENDOR_ID", "")
    product = properties.get("ID_MODEL_ID", "")
    serial = properties.get("ID_SERIAL_SHORT", "")
    links = sorted(
        link for link in properties.get("DEVLINKS", "").split() if link.startswith(LINK_DIR)
    )
    if links:
        key = links[0]  # /dev/wirelet/usb-<serial>, from the rules
    elif serial:
        key = f"usb:{vendor}:{product}:{serial}"  # the same key the usb source gives it
    else:
        key = f"usb:path:{properties.get('ID_PATH') or sys_path}"
    details = {"vendor": vendor, "product": product, "serial": serial, "sys_path": sys_path}
    return UdevMatch(
        FoundDevice(key, device_node, "udev", follow_link=False, details=details, transport="usb")
    )


class UdevSource:
    name = "udev"

    def __init__(self, context: Any = None) -> None:
        self._context = context
        self.ready = asyncio.Event()
        self._present: dict[str, str] = {}  # sys path -> key
        self._monitor: Any = None

    def _handle(self, sink: DeviceSink, action: str, device: Any) -> None:
        sys_path = str(device.sys_path)
        if action == "remove":
            key = self._present.pop(sys_path, None)
            if key is not None:
                sink.device_removed(key, self.name)
            else:
                sink.device_ignored(sys_path, "removed, was not ours")
            return
        if action not in ("add", "change", "bind", "online"):
            return
        properties = {str(k): str(v) for k, v in device.properties.items()}
        match = classify(
            sys_path,
            str(device.subsystem or ""),
            device.device_node,
            [str(t) for t in device.tags],
            properties,
        )
        if match.found is None:
            sink.device_ignored(sys_path, match.why)
            return
        if self._present.get(sys_path) == match.found.key:
            return  # seen by both coldplug and the monitor, or a change event: reported once
        self._present[sys_path] = match.found.key
        sink.device_added(match.found)

    def _drain(self, sink: DeviceSink) -> None:
        monitor = self._monitor
        while monitor is not None:
            try:
                device = monitor.poll(timeout=0)
            except OSError as exc:  # ENOBUFS: events were lost; the next ones still count
                log.warning("udev monitor: %s", exc)
                continue
            if device is None:
                return
            try:
                self._handle(sink, str(device.action), device)
            except Exception:
                log.exception("udev event for %s could not be handled", device.sys_path)

    async def run(self, sink: DeviceSink) -> None:
        try:
            import pyudev
        except ImportError as exc:  # pragma: no cover - pyudev is a dependency
            log.error("devices.udev is set but pyudev cannot be imported: %s", exc)
            return
        try:
            context = self._context or pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context, source="udev")
            for subsystem in SUBSYSTEMS:
                monitor.filter_by(subsystem)
            monitor.start()
        except Exception as exc:
            log.error(
                'cannot watch udev (%s); use devices.dirs = ["/dev/wirelet"] where udev '
                "does not run (containers)",
                exc,
            )
            return
        self._monitor = monitor
        loop = asyncio.get_running_loop()
        loop.add_reader(monitor.fileno(), self._drain, sink)
        try:
            # Coldplug, after the monitor started so nothing slips between the two.
            for subsystem in SUBSYSTEMS:
                for device in context.list_devices(subsystem=subsystem):
                    self._handle(sink, "add", device)
            self._drain(sink)
            self.ready.set()
            await asyncio.Event().wait()  # events arrive through the reader until cancelled
        finally:
            loop.remove_reader(monitor.fileno())
            self._monitor = None
            with contextlib.suppress(Exception):
                monitor.stop()
