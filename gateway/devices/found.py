"""What a discovery source reports, and the interface every source reports to.

A source (explicit ports, a directory of links, udev) only finds devices; it never opens them.
It tells its sink that a device with a stable key is present at some path, or gone. The key is
what survives a re-plug: a link path named from the device's serial (`/dev/wirelet/<serial>`,
the emulator's `DIR/<device-id>`), or for udev without such a link the USB vendor, product,
serial and interface. The node's name still comes from the device's own handshake identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FoundDevice:
    key: str  # stable across re-plugs: sessions (and so nodes) are keyed by it
    path: str  # what to open now (a tty, or a link to one)
    source: str  # "ports", "dir" or "udev"
    follow_link: bool = True  # resolve `path` afresh on every open (it is a link that moves)
    details: Mapping[str, str] = field(default_factory=dict)  # vendor/product/serial, for logs
    transport: str = "serial"  # "serial" (a tty) or "usb" (a /dev/bus/usb node, raw bulk pipes)


class DeviceSink(Protocol):
    """Receives what sources find. Called from the event loop, never blocks."""

    def device_added(self, found: FoundDevice) -> None:
        """A device is present at `found.path` (first time, or back after a removal)."""

    def device_removed(self, key: str, source: str) -> None:
        """The device behind `key` went away (unplugged, link removed)."""

    def device_ignored(self, where: str, why: str) -> None:
        """Something was seen and is not ours (for debug logs and tests)."""
