"""hil.qemu itself: boards with distinct identities on ptys behind DIR/<device-id> links, and
QEMU's controls as faults. The firmware is the real one; the other end is the gateway's session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.link.session import DeviceSession
from gateway.transport.serial import serial_opener
from hil.qemu import QemuFleet, missing_tools
from hil.qemu.firmware import FirmwareBuildError, FirmwareImage
from hil.qemu.targets import TARGETS

pytestmark = pytest.mark.timeout(180)

TARGET = TARGETS["cortex-m"]  # the quicker board to boot; tests/qemu/test_boards.py runs both


@pytest.fixture
def needs_qemu() -> None:
    missing = missing_tools(TARGET)
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run `make system-deps`")


def _session(link: Path) -> DeviceSession:
    return DeviceSession(serial_opener(lambda: str(link)), label=link.name)


async def test_boards_have_distinct_ids_links_and_new_boot_ids_after_faults(
    needs_qemu: None, tmp_path: Path
) -> None:
    ids = ["qa-0", "qa-1"]
    async with QemuFleet(tmp_path, dict.fromkeys(ids, TARGET)) as fleet:
        assert sorted(os.listdir(tmp_path)) == ids
        facts = {}
        for device_id in ids:
            link = fleet.symlink(device_id)
            assert os.readlink(link) == fleet.board(device_id).tty
            async with _session(link) as session:
                facts[device_id] = await session.wait_up(timeout_s=30)
        assert {f.device_id for f in facts.values()} == set(ids)
        assert facts["qa-0"].firmware_name == "wirelet-reference"
        assert set(facts["qa-0"].apps) == {"echo", "counter", "forever", "exit", "flood", "reboot"}

        board = fleet.board("qa-0")
        await board.reboot()
        async with _session(fleet.symlink("qa-0")) as session:
            after_reset = await session.wait_up(timeout_s=30)
        assert after_reset.boot_id != facts["qa-0"].boot_id

        await board.unplug()
        assert not fleet.symlink("qa-0").exists()
        assert await board.status() == "off"
        await board.replug()
        assert board.starts == 2  # powered up again (a pty name may be reused)
        assert os.readlink(fleet.symlink("qa-0")) == board.tty
        async with _session(fleet.symlink("qa-0")) as session:
            after_replug = await session.wait_up(timeout_s=30)
        assert after_replug.boot_id not in {after_reset.boot_id, facts["qa-0"].boot_id}

        await board.hang()
        assert await board.status() == "paused"
        await board.resume()
        assert await board.status() == "running"
    assert os.listdir(tmp_path) == []


def test_per_board_images_differ_only_in_identity(needs_qemu: None, tmp_path: Path) -> None:
    from hil.qemu.firmware import build_firmware

    build_dir = build_firmware(TARGET)
    image = FirmwareImage(TARGET.image_path(build_dir))
    one = image.for_board("board-one", tmp_path / "one.elf", seed=1).read_bytes()
    two = image.for_board("board-two", tmp_path / "two.elf", seed=2).read_bytes()
    original = image.path.read_bytes()
    assert len(one) == len(two) == len(original)
    differing = [i for i in range(len(one)) if one[i] != two[i]]
    at = image.identity_offset(original)
    assert differing and at <= differing[0] and differing[-1] < at + 49 + 9
    with pytest.raises(ValueError, match="device id"):
        image.for_board("x" * 49, tmp_path / "long.elf")


def test_an_image_without_identity_block_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "other.elf"
    image.write_bytes(b"\x7fELF not wirelet firmware")
    with pytest.raises(FirmwareBuildError, match="no board identity block"):
        FirmwareImage(image).for_board("x", tmp_path / "x.elf")


def test_unknown_target_is_named() -> None:
    with pytest.raises(ValueError, match="unknown target 'pdp11'; known: \\['avr', 'cortex-m'\\]"):
        QemuFleet("/nonexistent", {"b0": "pdp11"})


def test_cli_refuses_bad_arguments_clearly(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hil.qemu", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    bad_target = run("--target", "pdp11", "--dir", str(tmp_path))
    assert bad_target.returncode == 2 and "invalid choice: 'pdp11'" in bad_target.stderr
    no_boards = run("--boards", "0", "--dir", str(tmp_path))
    assert no_boards.returncode == 2 and "--boards must be at least 1" in no_boards.stderr
    no_fleet = run("ctl", str(tmp_path), "list")
    assert no_fleet.returncode == 2 and "error:" in no_fleet.stderr
