"""The emulator as a library: profiles, apps, symlinks, plug/unplug, the control socket."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from firmware_protocol.constants import FRAME_OVERHEAD, MAX_FRAME_CEILING
from gateway.link.events import TaskExited, TaskOutput
from gateway.link.session import DeviceSession
from gateway.transport.serial import SerialSettings, serial_opener
from hil.emulator.apps import APPS, FLOOD_LINE, flood_bytes
from hil.emulator.control import control_socket_path, send_control_async
from hil.emulator.faults import FaultSettings
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile, ProfileError, fleet_profiles, load_profile
from tests.link.helpers import FAST_LINK, FAST_SESSION


def test_profile_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "board.toml"
    toml.write_text('product = "blinky"\nserial = "42"\napps = ["echo"]\nbaud = 115200\n')
    profile = load_profile(toml)
    assert profile.device_id == "blinky-42"
    assert profile.apps == ("echo",)
    assert profile.baud == 115200
    as_json = tmp_path / "board.json"
    as_json.write_text(json.dumps(profile.to_mapping()))
    assert load_profile(as_json) == profile


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'red'\n", "colour: unknown profile key"),
        ("apps = ['doom']\n", "unknown app"),
        ("task_slots = 0\n", "task_slots"),
    ],
)
def test_bad_profile_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_flood_pattern_is_position_independent() -> None:
    whole = flood_bytes(0, 10 * FLOOD_LINE)
    assert whole[:FLOOD_LINE] == b"000000000000000\n"
    for start, length in [(0, 1), (3, 40), (15, 2), (17, 100)]:
        assert flood_bytes(start, length) == whole[start : start + length]


def test_counter_blocks_when_output_buffer_is_full() -> None:
    run = APPS["counter"](["counter", "3", "0"], {}, 0.0)
    first = run.step(0.0, room=2)  # room for "1\n" only
    assert [o.data for o in first.output] == [b"1\n"] and first.exit_code is None
    rest = run.step(0.0, room=100)
    assert [o.data for o in rest.output] == [b"2\n", b"3\n"] and rest.exit_code == 0


async def test_fleet_links_follow_plug_state(tmp_path: Path) -> None:
    async with EmulatedFleet(tmp_path, fleet_profiles(3), link_config=FAST_LINK) as fleet:
        for device in fleet.devices:
            link = tmp_path / device.device_id
            assert os.readlink(link) == device.tty
            assert Path(device.tty).is_char_device()  # noqa: ASYNC240 - a stat, in a test
        device = fleet.device("emu-0001")
        old = device.tty
        device.unplug()
        assert device.tty == ""
        assert not (tmp_path / "emu-0001").exists()
        new = device.plug()
        assert new != old
        assert os.readlink(tmp_path / "emu-0001") == new
        assert control_socket_path(tmp_path).exists()
    assert sorted(os.listdir(tmp_path)) == []  # links and socket removed on close


async def test_every_device_id_gets_a_visible_link(tmp_path: Path) -> None:
    # An id with '/' (the protocol allows it; the gateway cleans it into a node name) made the
    # emulator fail at start with "No such file or directory"; a leading '.' hid the link.
    ids = ["acme/board_1", ".hidden", "50%"]
    profiles = [DeviceProfile(device_id=i) for i in ids]
    async with EmulatedFleet(tmp_path, profiles, link_config=FAST_LINK) as fleet:
        visible = sorted(n for n in os.listdir(tmp_path) if not n.startswith("."))
        assert visible == ["%2Ehidden", "50%25", "acme%2Fboard_1"]
        for device in fleet.devices:
            assert os.readlink(fleet.symlink(device.device_id)) == device.tty


async def test_control_socket_drives_devices(tmp_path: Path) -> None:
    async with EmulatedFleet(tmp_path, fleet_profiles(2), link_config=FAST_LINK) as fleet:
        listing = await send_control_async(tmp_path, {"op": "list"})
        assert [d["id"] for d in listing["devices"]] == ["emu-0000", "emu-0001"]

        reply = await send_control_async(
            tmp_path, {"op": "fault", "device": "emu-0000", "faults": {"drop": 0.25}}
        )
        assert reply["ok"] and reply["device"]["faults"]["drop"] == 0.25
        reply = await send_control_async(
            tmp_path, {"op": "fault", "device": "emu-0000", "faults": {"delay_ms": 5}}
        )
        assert fleet.device("emu-0000").faults == FaultSettings(drop=0.25, delay_ms=5)

        old_boot = fleet.device("emu-0001").boot_id
        await send_control_async(tmp_path, {"op": "reboot", "device": "emu-0001"})
        assert fleet.device("emu-0001").boot_id != old_boot
        await send_control_async(tmp_path, {"op": "hang", "device": "emu-0001"})
        assert fleet.device("emu-0001").hung
        await send_control_async(tmp_path, {"op": "resume", "device": "emu-0001"})
        assert not fleet.device("emu-0001").hung
        await send_control_async(tmp_path, {"op": "unplug", "device": "emu-0001"})
        assert not (tmp_path / "emu-0001").exists()
        await send_control_async(tmp_path, {"op": "replug", "device": "emu-0001"})
        assert (tmp_path / "emu-0001").exists()

        bad = await send_control_async(tmp_path, {"op": "explode", "device": "emu-0000"})
        assert not bad["ok"] and "explode" in bad["error"]
        bad = await send_control_async(tmp_path, {"op": "unplug", "device": "nope"})
        assert not bad["ok"] and "nope" in bad["error"]
        bad = await send_control_async(
            tmp_path, {"op": "fault", "device": "emu-0000", "faults": {"drop": 2}}
        )
        assert not bad["ok"] and "drop" in bad["error"]
        # A fault beside "faults", or true for a probability, was taken with ok and ignored
        # (or turned into 1.0).
        bad = await send_control_async(tmp_path, {"op": "fault", "device": "emu-0000", "drop": 1})
        assert not bad["ok"] and "unknown field(s) ['drop']" in bad["error"]
        bad = await send_control_async(
            tmp_path, {"op": "fault", "device": "emu-0000", "faults": {"duplicate": True}}
        )
        assert not bad["ok"] and "duplicate: expected a number, got True" in bad["error"]
        assert fleet.device("emu-0000").faults == FaultSettings(drop=0.25, delay_ms=5)

        reply = await send_control_async(
            tmp_path,
            {"op": "misbehave", "device": "emu-0000", "misbehaviour": {"foreign_output": True}},
        )
        assert reply["ok"] and reply["device"]["misbehaviour"]["foreign_output"]
        assert fleet.device("emu-0000").misbehaviour.foreign_output
        bad = await send_control_async(
            tmp_path, {"op": "misbehave", "device": "emu-0000", "misbehaviour": {"lie": True}}
        )
        assert not bad["ok"] and "lie" in bad["error"]


@pytest.mark.parametrize("device_frame", [256, 1024])
async def test_device_output_frames_fit_its_own_declared_max_frame(
    tmp_path: Path, device_frame: int
) -> None:
    """An emulated device sends frames as large as it declares, not larger, whatever larger
    frames the gateway accepts."""
    profile = dataclasses.replace(fleet_profiles(1)[0], max_frame=device_frame)
    gateway_config = dataclasses.replace(
        FAST_SESSION, link=dataclasses.replace(FAST_LINK, max_frame=MAX_FRAME_CEILING)
    )
    path = tmp_path / "emu-0000"
    opener = serial_opener(lambda: os.path.realpath(path), SerialSettings())
    size = 8 * device_frame
    async with (
        EmulatedFleet(tmp_path, [profile], link_config=FAST_LINK),
        DeviceSession(opener, label="emu-0000", config=gateway_config) as session,
    ):
        await session.wait_up(10)
        sub = session.subscribe()
        await session.start_task("t", "flood", ["flood", str(size)])
        chunks = []
        while True:
            event = await sub.get(30)
            if isinstance(event, TaskOutput):
                chunks.append(len(event.data))
            elif isinstance(event, TaskExited):
                break
        sub.close()
    assert sum(chunks) == size
    largest = max(chunks)
    assert largest + FRAME_OVERHEAD < device_frame
    # Full frames: less than a frame's header room below the declared size.
    assert largest > device_frame - 64, chunks
