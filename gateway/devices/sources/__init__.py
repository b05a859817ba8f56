"""Discovery sources: each finds devices one way and reports them to a `DeviceSink`."""

from gateway.devices.sources.dir import DirSource
from gateway.devices.sources.ports import PortsSource
from gateway.devices.sources.udev import UdevSource
from gateway.devices.sources.usb import UsbSource

__all__ = ["DirSource", "PortsSource", "UdevSource", "UsbSource"]
