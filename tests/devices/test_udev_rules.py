"""udev/60-wirelet.rules: syntax, and what a matching and a non-matching device get."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.devices.udev_rules import Device, Outcome, Rule, RuleSyntaxError, evaluate, parse

RULES = Path(__file__).resolve().parents[2] / "udev" / "60-wirelet.rules"
PICO_LINE = re.compile(r'^# (SUBSYSTEMS=="usb", ATTRS\{idVendor\}=="2e8a".*)$', re.MULTILINE)


def shipped() -> str:
    return RULES.read_text()


def enabled_pico() -> list[Rule]:
    """The rules as a user has them after enabling the Pico line in the marked block."""
    text, count = PICO_LINE.subn(r"\1", shipped())
    assert count == 1
    return parse(text)


def pico(tty: str = "ttyACM0", serial: str = "E6614C311B") -> Device:
    usb = Device(
        "usb",
        kernel="1-3",
        devtype="usb_device",
        attrs={"idVendor": "2e8a", "idProduct": "000a", "serial": serial, "power/control": "auto"},
    )
    interface = Device("usb", kernel="1-3:1.0", devtype="usb_interface", parent=usb)
    return Device(
        "tty",
        kernel=tty,
        env={"ID_SERIAL_SHORT": serial, "ID_USB_INTERFACE_NUM": "00", "DEVNAME": f"/dev/{tty}"},
        parent=interface,
    )


def ftdi() -> Device:
    usb = Device("usb", devtype="usb_device", attrs={"idVendor": "0403", "idProduct": "6001"})
    return Device("tty", kernel="ttyUSB0", env={"ID_SERIAL_SHORT": "A50285BI"}, parent=usb)


def assert_served(out: Outcome) -> None:
    assert out.env.get("ID_MM_DEVICE_IGNORE") == "1"
    assert "wirelet" in out.tags
    assert out.group == "wirelet"
    assert out.mode == "0660"


def assert_untouched(out: Outcome) -> None:
    assert "ID_MM_DEVICE_IGNORE" not in out.env
    assert not out.tags and not out.symlinks and out.group is None and out.mode is None
    assert not out.attr_writes


def test_shipped_rules_parse() -> None:
    assert len(parse(shipped())) > 5


def test_parser_rejects_what_udev_rejects() -> None:
    for bad in (
        'SUBSYSTEM=="tty" GROUP="wirelet"',  # missing comma
        'SUBSYSTEM="tty", GROUP=="wirelet"',  # operators swapped
        'ENV="1"',  # ENV needs {NAME}
        'SUBSYSTEM=="tty", GOTO="nowhere"',  # no such LABEL
        'SUBSYSTEM=="tty", GROUP="wirelet',  # unterminated
        'SUBSYSTEM=="tty"',  # nothing to do
        'FROB=="x", MODE="0660"',  # unknown key
    ):
        with pytest.raises(RuleSyntaxError):
            parse(bad)


@pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm is not installed")
def test_udevadm_verify_where_available(tmp_path: Path) -> None:
    probe = subprocess.run(["udevadm", "verify", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("this systemd's udevadm has no `verify` (systemd < 253); parsed above instead")
    result = subprocess.run(
        ["udevadm", "verify", "--resolve-names=never", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_is_taken_until_the_user_opts_in() -> None:
    rules = parse(shipped())
    assert_untouched(evaluate(rules, pico()))
    assert_untouched(evaluate(rules, ftdi()))


def test_opted_in_board_tty_gets_link_group_mode_tag_and_mm_ignore() -> None:
    out = evaluate(enabled_pico(), pico())
    assert_served(out)
    assert out.symlinks == ["wirelet/E6614C311B-if00"]
    assert out.env["WIRELET_DEVICE"] == "1"


def test_same_board_under_a_new_tty_name_gets_the_same_link() -> None:
    first = evaluate(enabled_pico(), pico("ttyACM0"))
    again = evaluate(enabled_pico(), pico("ttyACM3"))
    assert first.symlinks == again.symlinks


def test_opted_in_usb_device_gets_autosuspend_off_and_a_raw_usb_link() -> None:
    usb = pico().parent
    assert usb is not None and usb.parent is not None
    out = evaluate(enabled_pico(), usb.parent)
    assert_served(out)
    assert out.attr_writes == {"power/control": "on"}
    assert out.symlinks == ["wirelet/usb-E6614C311B"]


def test_usb_interfaces_are_not_given_nodes() -> None:
    interface = pico().parent
    assert interface is not None
    out = evaluate(enabled_pico(), interface)
    assert out.group is None and out.mode is None and not out.symlinks


def test_board_not_in_the_enabled_list_is_left_alone() -> None:
    assert_untouched(evaluate(enabled_pico(), ftdi()))


def test_any_device_with_the_user_property_is_taken() -> None:
    device = ftdi()
    device.env["WIRELET_DEVICE"] = "1"  # set by the user's own 59-*.rules
    out = evaluate(parse(shipped()), device)
    assert_served(out)
    assert out.symlinks == ["wirelet/A50285BI"]


def test_a_device_without_a_serial_is_tagged_but_gets_no_link() -> None:
    device = ftdi()
    device.env = {"WIRELET_DEVICE": "1"}
    out = evaluate(parse(shipped()), device)
    assert_served(out)
    assert out.symlinks == []
    assert "builtin:usb_id" in out.imports


def test_removal_and_other_subsystems_are_not_touched() -> None:
    device = pico()
    device.action = "remove"
    assert_untouched(evaluate(enabled_pico(), device))
    block = Device("block", env={"WIRELET_DEVICE": "1"})
    assert_untouched(evaluate(enabled_pico(), block))


def test_no_world_accessible_modes_and_every_board_line_ships_disabled() -> None:
    text = shipped()
    for mode in re.findall(r'MODE="(\d+)"', text):
        assert int(mode[-1]) == 0, f"mode {mode} gives others access"
    begin, end = text.index("===== EDIT HERE"), text.index("===== END OF EDIT HERE")
    block = text[begin:end]
    vendor_lines = [line for line in block.splitlines() if "ATTRS{idVendor}" in line]
    assert len(vendor_lines) == 6
    assert all(line.startswith("# ") for line in vendor_lines)
    for vid in ("2e8a", "303a", "0483", "1a86", "10c4", "0403"):
        assert f'"{vid}"' in block
