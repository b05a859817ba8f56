"""Command line of the emulator.

python -m hil.emulator --devices 3 --dir /tmp/devs [--profile board.toml] [--baud 115200]
python -m hil.emulator ctl DIR list
python -m hil.emulator ctl DIR DEVICE unplug|replug|reboot|hang|resume|status
python -m hil.emulator ctl DIR DEVICE fault [--drop R] [--corrupt R] [--duplicate R]
                                            [--delay MS] [--clear]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
from collections.abc import Sequence
from pathlib import Path

from hil.emulator.faults import FaultSettings
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile, ProfileError, fleet_profiles, load_profile
from hil.fleet_cli import control, dispatch, run_server, serve_until_stopped, setup_logging

DEVICE_OPS = ("unplug", "replug", "plug", "reboot", "hang", "resume", "status")


def _add_fault_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drop", type=float, help="probability a frame is dropped")
    parser.add_argument("--corrupt", type=float, help="probability a byte gets a bit flipped")
    parser.add_argument("--duplicate", type=float, help="probability a frame is sent twice")
    parser.add_argument("--delay", type=float, help="extra latency per frame, milliseconds")


def _fault_changes(args: argparse.Namespace) -> dict[str, float]:
    pairs = {"drop": args.drop, "corrupt": args.corrupt, "duplicate": args.duplicate}
    pairs["delay_ms"] = args.delay
    return {k: v for k, v in pairs.items() if v is not None}


def build_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil.emulator",
        description="Serve emulated wirelet devices on pseudo-terminals until interrupted. "
        "Use `python -m hil.emulator ctl --help` to control a running emulator.",
    )
    parser.add_argument("--devices", type=int, default=1, help="how many devices (default 1)")
    parser.add_argument("--dir", required=True, type=Path, help="where DIR/<device-id> links go")
    parser.add_argument("--profile", type=Path, help="device profile (.toml or .json)")
    parser.add_argument("--baud", type=int, help="pace each direction to BAUD/10 bytes/s")
    parser.add_argument("--seed", type=int, help="random seed for boot ids and faults")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_fault_flags(parser)
    return parser


def build_ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil.emulator ctl", description="Control a running emulator."
    )
    parser.add_argument("dir", type=Path, help="the emulator's --dir")
    parser.add_argument("device", help="device id, or `list`")
    parser.add_argument(
        "op", nargs="?", choices=(*DEVICE_OPS, "fault", "misbehave"), default="status"
    )
    parser.add_argument("--clear", action="store_true", help="fault: reset unspecified faults")
    _add_fault_flags(parser)
    for name in ("foreign-output", "endless-task-list"):
        parser.add_argument(f"--{name}", choices=("on", "off"), help=f"misbehave: {name}")
    return parser


def _misbehaviour_changes(args: argparse.Namespace) -> dict[str, bool]:
    changes = {"foreign_output": args.foreign_output, "endless_task_list": args.endless_task_list}
    return {key: value == "on" for key, value in changes.items() if value is not None}


def _profiles(args: argparse.Namespace) -> list[DeviceProfile]:
    base = load_profile(args.profile) if args.profile else DeviceProfile(device_id="x")
    if args.baud:
        base = dataclasses.replace(base, baud=args.baud)
    if args.devices == 1 and args.profile and base.device_id:
        return [base]
    return fleet_profiles(args.devices, base)


def _raise_fd_limit(devices: int) -> None:
    """Each device holds two fds (pty master and slave); lift the soft limit for big fleets."""
    needed = 2 * devices + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _serve(args: argparse.Namespace) -> None:
    faults = FaultSettings.from_mapping(_fault_changes(args))
    _raise_fd_limit(args.devices)
    await serve_until_stopped(
        EmulatedFleet(args.dir, _profiles(args), faults=faults, seed=args.seed),
        lambda fleet: ((d.device_id, d.tty, fleet.symlink(d.device_id)) for d in fleet.devices),
    )


def run_main(argv: Sequence[str]) -> int:
    args = build_run_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_server(lambda: _serve(args), (ProfileError, ValueError, OSError))


def ctl_main(argv: Sequence[str]) -> int:
    args = build_ctl_parser().parse_args(argv)
    if args.device == "list":
        request: dict[str, object] = {"op": "list"}
    elif args.op == "misbehave":
        request = {
            "op": "misbehave",
            "device": args.device,
            "misbehaviour": _misbehaviour_changes(args),
        }
    elif args.op == "fault":
        request = {"op": "fault", "device": args.device, "faults": _fault_changes(args)}
        if args.clear:
            request["clear"] = True
    else:
        request = {"op": args.op, "device": args.device}
    return control(args.dir, request)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(argv, run_main, ctl_main)
