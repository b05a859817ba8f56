"""Choosing raw USB devices: selectors, sysfs listing, the usb source, udev, config, errors."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import usb.core

from gateway.config import config_from_mapping
from gateway.devices.found import FoundDevice
from gateway.devices.port import DevicePermissionDenied, explain_open_error
from gateway.devices.sources.udev import classify
from gateway.devices.sources.usb import UsbDeviceInfo, UsbSelector, UsbSource, list_usb_devices
from gateway.errors import ConfigError, PortNotFound, TransportError
from gateway.transport.usb import UsbTransport, parse_node

BOARD = UsbDeviceInfo("1-1.2", 1, 7, "cafe", "4001", "WL0001")
OTHER = UsbDeviceInfo("1-3", 1, 9, "cafe", "4001", "WL0002")
NO_SERIAL = UsbDeviceInfo("2-4", 2, 3, "1209", "abcd", "")


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.found: list[FoundDevice] = []

    def device_added(self, found: FoundDevice) -> None:
        self.found.append(found)
        self.events.append(("added", found.key, found.path))

    def device_removed(self, key: str, source: str) -> None:
        self.events.append(("removed", key, source))

    def device_ignored(self, where: str, why: str) -> None:
        self.events.append(("ignored", where, why))


def test_selectors_by_vid_pid_serial_bus_path_and_node() -> None:
    assert UsbSelector.parse("CAFE:4001").matches(BOARD)
    assert UsbSelector.parse("cafe:4001").matches(OTHER)
    assert not UsbSelector.parse("cafe:4002").matches(BOARD)
    assert UsbSelector.parse("cafe:4001:WL0001").matches(BOARD)
    assert not UsbSelector.parse("cafe:4001:WL0001").matches(OTHER)
    assert UsbSelector.parse("serial=WL0002").matches(OTHER)
    assert UsbSelector.parse("1-1.2").matches(BOARD)
    assert not UsbSelector.parse("1-1.2").matches(OTHER)
    assert UsbSelector.parse("/dev/bus/usb/001/007").matches(BOARD)
    assert not UsbSelector.parse("/dev/bus/usb/001/008").matches(BOARD)


@pytest.mark.parametrize("text", ["cafe", "cafe:40011", "serial=", "/dev/ttyACM0", "usb1"])
def test_a_bad_selector_names_the_forms(text: str) -> None:
    with pytest.raises(
        ConfigError, match=r"--usb: .* is not a USB device selector; expected VID:PID"
    ):
        UsbSelector.parse(text)


def test_keys_survive_a_replug_serial_first_then_the_physical_port() -> None:
    replugged = UsbDeviceInfo("1-4", 1, 12, "cafe", "4001", "WL0001")
    assert BOARD.key == replugged.key == "usb:cafe:4001:WL0001"
    assert NO_SERIAL.key == "usb:path:2-4"
    assert BOARD.node == "/dev/bus/usb/001/007"


def _sysfs_device(root: Path, name: str, **attributes: str) -> None:
    directory = root / name
    directory.mkdir()
    for attribute, value in attributes.items():
        (directory / attribute).write_text(value + "\n")


def test_list_usb_devices_reads_sysfs_and_skips_hubs_interfaces_and_half_written(
    tmp_path: Path,
) -> None:
    _sysfs_device(tmp_path, "usb1", busnum="1", devnum="1", idVendor="1d6b", idProduct="0002")
    _sysfs_device(
        tmp_path,
        "1-1.2",
        busnum="1",
        devnum="7",
        idVendor="cafe",
        idProduct="4001",
        serial="WL0001",
    )
    _sysfs_device(tmp_path, "1-1.2:1.0", bInterfaceClass="ff")
    _sysfs_device(tmp_path, "2-4", busnum="2", devnum="3", idVendor="1209", idProduct="abcd")
    _sysfs_device(tmp_path, "1-3", busnum="1", idVendor="cafe")  # still enumerating
    assert list_usb_devices(str(tmp_path)) == [BOARD, NO_SERIAL]
    assert list_usb_devices(str(tmp_path / "missing")) == []


def test_usb_source_reports_matches_once_follows_replugs_and_removals() -> None:
    source = UsbSource([UsbSelector.parse("cafe:4001:WL0001")])
    sink = Sink()
    source.scan(sink, [BOARD, OTHER, NO_SERIAL])
    source.scan(sink, [BOARD, OTHER])  # unchanged: nothing new
    source.scan(sink, [OTHER])  # unplugged
    source.scan(sink, [UsbDeviceInfo("1-1.2", 1, 8, "cafe", "4001", "WL0001")])  # back
    key = "usb:cafe:4001:WL0001"
    assert sink.events == [
        ("added", key, "/dev/bus/usb/001/007"),
        ("removed", key, "usb"),
        ("added", key, "/dev/bus/usb/001/008"),
    ]
    assert all(found.transport == "usb" and not found.follow_link for found in sink.found)
    assert sink.found[0].details["port_path"] == "1-1.2"


def test_a_device_seen_before_its_serial_is_written_gets_one_key() -> None:
    """sysfs shows a new device's attributes one by one: a scan that sees it before its serial
    must not serve it by port (a second session once the serial appears)."""
    source = UsbSource([UsbSelector.parse("cafe:4001")])
    sink = Sink()
    half_written = UsbDeviceInfo("1-1.2", 1, 7, "cafe", "4001", "")
    source.scan(sink, [half_written])
    source.scan(sink, [BOARD])
    source.scan(sink, [BOARD])
    assert sink.events == [("added", "usb:cafe:4001:WL0001", "/dev/bus/usb/001/007")]


def test_a_device_without_a_serial_is_served_by_port_from_the_second_scan_on() -> None:
    source = UsbSource([UsbSelector.parse("cafe:4001")])
    sink = Sink()
    no_serial = UsbDeviceInfo("1-4", 1, 9, "cafe", "4001", "")
    source.scan(sink, [no_serial])
    assert sink.events == []
    source.scan(sink, [no_serial])
    source.scan(sink, [no_serial])
    source.scan(sink, [])
    assert sink.events == [
        ("added", "usb:path:1-4", "/dev/bus/usb/001/009"),
        ("removed", "usb:path:1-4", "usb"),
    ]


def test_udev_serves_a_tagged_usb_device_with_a_wirelet_interface() -> None:
    props = {
        "WIRELET_DEVICE": "1",
        "DEVTYPE": "usb_device",
        "ID_VENDOR_ID": "cafe",
        "ID_MODEL_ID": "4001",
        "ID_SERIAL_SHORT": "WL0001",
        "ID_USB_INTERFACES": ":020200:0a0000:ff5701:",
    }
    raw = classify("/sys/x/1-1", "usb", "/dev/bus/usb/001/004", [], props)
    assert raw.found is not None
    assert raw.found.transport == "usb"
    assert raw.found.key == "usb:cafe:4001:WL0001"  # the key the usb source uses too
    assert raw.found.path == "/dev/bus/usb/001/004"
    linked = classify(
        "/sys/x/1-1",
        "usb",
        "/dev/bus/usb/001/004",
        [],
        props | {"DEVLINKS": "/dev/wirelet/usb-WL0001"},
    )
    assert linked.found is not None and linked.found.key == "/dev/wirelet/usb-WL0001"
    cdc = classify(
        "/sys/x/1-1", "usb", "/dev/bus/usb/001/004", [], props | {"ID_USB_INTERFACES": ":020200:"}
    )
    assert cdc.found is None and "served through its tty" in cdc.why
    # A composite board's CDC console is left alone: the link is on the raw interface.
    console = classify("/sys/x/1-1/tty/ttyACM0", "tty", "/dev/ttyACM0", [], props)
    assert console.found is None and "served raw" in console.why


def test_config_devices_usb_is_checked_at_load() -> None:
    config = config_from_mapping({"devices": {"usb": ["cafe:4001", "serial=WL0001"]}}, "gw.toml")
    assert config.devices.usb == ("cafe:4001", "serial=WL0001")
    with pytest.raises(ConfigError, match=r"gw.toml: devices.usb: 'cafe-4001' is not a USB"):
        config_from_mapping({"devices": {"usb": ["cafe-4001"]}}, "gw.toml")


def test_parse_node_rejects_what_is_not_a_usb_node() -> None:
    assert parse_node("/dev/bus/usb/003/012").node == "/dev/bus/usb/003/012"
    with pytest.raises(PortNotFound, match="not a USB device node"):
        parse_node("/dev/ttyACM0")


async def test_opening_an_absent_usb_device_is_port_not_found() -> None:
    # Real libusb, real (empty or unrelated) bus: nothing lives at bus 255.
    with pytest.raises(PortNotFound, match="no USB device at bus 255 address 254"):
        await UsbTransport.open("/dev/bus/usb/255/254")


def test_permission_denied_on_a_usb_node_names_the_group_and_the_fix() -> None:
    node = "/dev/bus/usb/001/004"
    error = TransportError(f"{node}: access denied")
    error.__cause__ = usb.core.USBError(
        "Access denied (insufficient permissions)", -3, errno.EACCES
    )
    explained = explain_open_error(node, error)
    assert isinstance(explained, DevicePermissionDenied)
    assert node in str(explained)
    assert "usermod -aG wirelet" in str(explained)
    assert "60-wirelet.rules" in str(explained)
