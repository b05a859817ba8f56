"""A fleet of emulated devices in one process, with by-id style symlinks and a control socket.

    async with EmulatedFleet(tmp_path, fleet_profiles(3)) as fleet:
        dev = fleet.device("emu-0001")
        dev.unplug(); dev.replug(); dev.reboot(); dev.set_faults(FaultSettings(drop=0.05))

DIR/<device-id> is a symlink to the device's current tty, like /dev/serial/by-id/...: it is removed
when the device is unplugged and re-pointed (atomically) when it is plugged in again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from firmware_protocol import LinkConfig
from hil.emulator.control import ControlServer, control_socket_path
from hil.emulator.device import EmulatedDevice
from hil.emulator.device_link import link_name, point_device_link
from hil.emulator.faults import FaultSettings, Misbehaviour
from hil.emulator.profile import DeviceProfile

_log = logging.getLogger(__name__)

# What a control request may hold (hil/emulator/control.py sends them).
_CONTROL_FIELDS = frozenset({"op", "device", "faults", "clear", "misbehaviour"})


class EmulatedFleet:
    def __init__(
        self,
        directory: str | Path,
        profiles: Iterable[DeviceProfile],
        *,
        link_config: LinkConfig | None = None,
        faults: FaultSettings | None = None,
        control_socket: bool = True,
        seed: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._profiles = list(profiles)
        ids = [p.device_id for p in self._profiles]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids must be unique, got {ids}")
        self._link_config = link_config
        self._faults = faults
        self._seed = seed
        self._devices: dict[str, EmulatedDevice] = {}
        self._control = (
            ControlServer(control_socket_path(self.directory), self._handle_control)
            if control_socket
            else None
        )

    async def __aenter__(self) -> EmulatedFleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for index, profile in enumerate(self._profiles):
                self.add(profile, seed=None if self._seed is None else self._seed + index)
            if self._control is not None:
                await self._control.start()
        except BaseException:
            await self.close()
            raise

    def add(self, profile: DeviceProfile, *, seed: int | None = None) -> EmulatedDevice:
        """Create and plug in one more device."""
        if profile.device_id in self._devices:
            raise ValueError(f"device {profile.device_id!r} already exists")
        device = EmulatedDevice(
            profile,
            link_config=self._link_config,
            faults=self._faults,
            on_tty_change=self._update_symlink,
            seed=seed,
        )
        self._devices[profile.device_id] = device
        device.plug()
        return device

    async def close(self) -> None:
        if self._control is not None:
            await self._control.close()
        for device in self._devices.values():
            device.close()
            with contextlib.suppress(FileNotFoundError):
                self.symlink(device.device_id).unlink()
        self._devices.clear()

    # --- access --------------------------------------------------------------------------------

    def device(self, device_id: str) -> EmulatedDevice:
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(f"no emulated device {device_id!r}") from None

    @property
    def devices(self) -> list[EmulatedDevice]:
        return list(self._devices.values())

    def symlink(self, device_id: str) -> Path:
        return self.directory / link_name(device_id)

    # --- symlinks ----------------------------------------------------------------------------

    def _update_symlink(self, device: EmulatedDevice) -> None:
        point_device_link(self.directory, device.device_id, device.tty)

    # --- control socket ----------------------------------------------------------------------

    async def _handle_control(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0912 (one branch per control command)
        op = request.get("op")
        # A misplaced field (a fault given beside "faults") would otherwise be ignored with ok.
        unknown = set(request) - _CONTROL_FIELDS
        if unknown:
            raise ValueError(
                f"unknown field(s) {sorted(unknown)}; known: {sorted(_CONTROL_FIELDS)}"
            )
        if op == "list":
            return {"ok": True, "devices": [self._describe(d) for d in self._devices.values()]}
        device = self.device(str(request.get("device", "")))
        if op == "unplug":
            device.unplug()
        elif op == "replug":
            device.replug()
        elif op == "plug":
            if not device.tty:
                device.plug()
        elif op == "reboot":
            device.reboot()
        elif op == "hang":
            device.hang()
        elif op == "resume":
            device.resume()
        elif op == "fault":
            changes = request.get("faults") or {}
            if not isinstance(changes, dict):
                raise ValueError("faults must be an object")
            FaultSettings.from_mapping(changes)  # names the unknown keys, if any
            base = FaultSettings() if request.get("clear") else device.faults
            updates = {k: float(v) for k, v in changes.items()}
            device.set_faults(dataclasses.replace(base, **updates))
        elif op == "misbehave":
            changes = request.get("misbehaviour") or {}
            if not isinstance(changes, dict):
                raise ValueError("misbehaviour must be an object")
            device.set_misbehaviour(Misbehaviour.from_mapping(changes, device.misbehaviour))
        elif op != "status":
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True, "device": self._describe(device)}

    def _describe(self, device: EmulatedDevice) -> dict[str, Any]:
        figures = dataclasses.asdict(device.figures())
        return {
            "id": device.device_id,
            "tty": device.tty,
            "symlink": str(self.symlink(device.device_id)),
            "faults": device.faults.to_mapping(),
            "misbehaviour": device.misbehaviour.to_mapping(),
            **figures,
        }
