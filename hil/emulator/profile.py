"""Device profiles: who an emulated device says it is and what it can do.

A profile is a TOML or JSON file; every key is optional and falls back to a small-board default.
Example (TOML):

    vendor = "Acme"
    product = "Blinky-M4"
    serial = "A1B2C3"           # device id defaults to "<product>-<serial>" when not given
    firmware_name = "wirelet-fw"
    firmware_version = "1.4.2"
    apps = ["echo", "counter", "forever", "exit", "flood", "reboot"]
    task_slots = 4
    memory_bytes = 262144
    max_frame = 512             # largest frame the device can receive
    rx_window = 8               # frames the device accepts in flight
    baud = 115200               # pace each direction to baud/10 bytes/s; omit for unthrottled
    output_buffer = 65536       # per-task bytes of unacknowledged output kept for a reconnect
    remembered_tasks = 16       # finished tasks kept for LIST_TASKS (oldest forgotten first)
    protocol_features = 0       # optional protocol features offered; omit for all (task handles)
    line_aware_timers = false   # retransmit timers from queueing, not the line (old firmware)
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_protocol import MAX_FRAME_CEILING, MIN_FRAME

ALL_APPS: tuple[str, ...] = ("echo", "counter", "forever", "exit", "flood", "reboot")


class ProfileError(ValueError):
    """A profile file or mapping is wrong; the message names the key."""


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    device_id: str = ""
    vendor: str = "wirelet"
    product: str = "emulated-mcu"
    serial: str = "0001"
    firmware_name: str = "wirelet-emu"
    firmware_version: str = "0.1.0"
    arch: str = "arm"
    apps: tuple[str, ...] = ALL_APPS
    task_slots: int = 4
    memory_bytes: int = 256 * 1024
    cpu_millis: int = 1000
    max_frame: int = 512
    rx_window: int = 8
    baud: int | None = None
    output_buffer: int = 64 * 1024
    # Finished tasks the device remembers for LIST_TASKS (oldest forgotten first).
    remembered_tasks: int = 16
    # Protocol versions the device claims; override to test version negotiation failures.
    protocol_versions: tuple[int, ...] = ()
    # Sends a streamed EXEC's output as EXEC_OUTPUT frames; False: a first-revision firmware
    # that answers every EXEC with one EXEC_RESULT, cut to fit (PROTOCOL.md section 9).
    streamed_exec: bool = True
    # Optional protocol features offered in HELLO (FEATURE_* bits); None: all the library
    # speaks, 0: a firmware of before them (e.g. task output without task handles).
    protocol_features: int | None = None
    # With `baud`, the firmware knows its UART's rate and times retransmissions from when a
    # frame has left the line (LinkConfig.line_rate); False: from when it was queued, as
    # firmware did before.
    line_aware_timers: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.device_id:
            object.__setattr__(self, "device_id", f"{self.product}-{self.serial}")
        unknown = set(self.apps) - set(ALL_APPS)
        if unknown:
            raise ProfileError(f"apps: unknown app(s) {sorted(unknown)}; known: {list(ALL_APPS)}")
        for name in ("task_slots", "memory_bytes", "max_frame", "rx_window", "output_buffer"):
            if getattr(self, name) <= 0:
                raise ProfileError(f"{name}: must be a positive integer")
        if self.remembered_tasks < 0:
            raise ProfileError("remembered_tasks: must be 0 or more")
        if not MIN_FRAME <= self.max_frame <= MAX_FRAME_CEILING:
            raise ProfileError(f"max_frame: must be within {MIN_FRAME}..{MAX_FRAME_CEILING}")
        if self.baud is not None and self.baud <= 0:
            raise ProfileError("baud: must be a positive integer or absent")

    def with_id(self, device_id: str) -> DeviceProfile:
        return dataclasses.replace(self, device_id=device_id)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DeviceProfile:
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise ProfileError(f"{key}: unknown profile key; known: {sorted(names)}")
            kwargs[key] = tuple(value) if key in ("apps", "protocol_versions") else value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ProfileError(str(exc)) from exc

    def to_mapping(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["apps"] = list(self.apps)
        data["protocol_versions"] = list(self.protocol_versions)
        data["extra"] = dict(self.extra)
        return data


def load_profile(path: str | Path) -> DeviceProfile:
    """Read a profile from a .toml or .json file."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a table/object at top level")
    try:
        return DeviceProfile.from_mapping(data)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from exc


def fleet_profiles(count: int, base: DeviceProfile | None = None) -> list[DeviceProfile]:
    """`count` profiles like `base` with distinct serials and ids (emu-0000, emu-0001, ...)."""
    base = base or DeviceProfile(device_id="x")
    return [
        dataclasses.replace(base, serial=f"{i:04d}", device_id=f"emu-{i:04d}") for i in range(count)
    ]
