"""Command line of the QEMU boards.

python -m hil.qemu --boards 2 --target cortex-m|avr [--target ...] --dir /tmp/devs [--prefix qemu-]
                  [--build DIR]
python -m hil.qemu ctl DIR list
python -m hil.qemu ctl DIR DEVICE reboot|hang|resume|unplug|replug|status
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hil.fleet_cli import control, dispatch, run_server, serve_until_stopped, setup_logging
from hil.qemu.board import BoardError
from hil.qemu.firmware import FirmwareBuildError, missing_tools
from hil.qemu.fleet import BOARD_OPS, QemuFleet
from hil.qemu.targets import TARGETS


def build_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil.qemu",
        description="Run the wirelet reference firmware on emulated boards (QEMU), each UART on a "
        "pty linked as DIR/<device-id>, until interrupted. "
        "`python -m hil.qemu ctl --help` controls running boards.",
    )
    parser.add_argument("--boards", type=int, default=1, help="boards per target (default 1)")
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        help="board type; repeat for several (default cortex-m)",
    )
    parser.add_argument("--dir", required=True, type=Path, help="where DIR/<device-id> links go")
    parser.add_argument(
        "--prefix", default="qemu-", help="device ids are PREFIX<target>-<n> (default qemu-)"
    )
    parser.add_argument(
        "--build", type=Path, help="firmware build directory (default build/firmware)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def build_ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil.qemu ctl", description="Control running emulated boards."
    )
    parser.add_argument("dir", type=Path, help="the boards' --dir")
    parser.add_argument("device", help="device id, or `list`")
    parser.add_argument("op", nargs="?", choices=BOARD_OPS, default="status")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    boards = {
        f"{args.prefix}{target}-{i}": target for target in args.target for i in range(args.boards)
    }
    await serve_until_stopped(
        QemuFleet(args.dir, boards, build_dir=args.build, control_socket=True),
        lambda fleet: ((b.device_id, b.tty, fleet.symlink(b.device_id)) for b in fleet.boards),
    )


def run_main(argv: Sequence[str]) -> int:
    args = build_run_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.boards < 1:
        print("error: --boards must be at least 1", file=sys.stderr)
        return 2
    args.target = list(dict.fromkeys(args.target or ["cortex-m"]))
    for target in args.target:
        missing = missing_tools(TARGETS[target])
        if missing:
            print(
                f"error: {target} boards need {', '.join(missing)}: run `make system-deps`",
                file=sys.stderr,
            )
            return 2
    return run_server(lambda: _serve(args), (FirmwareBuildError, BoardError, ValueError, OSError))


def ctl_main(argv: Sequence[str]) -> int:
    args = build_ctl_parser().parse_args(argv)
    request = {"op": "list"} if args.device == "list" else {"op": args.op, "device": args.device}
    return control(args.dir, request, timeout=30.0)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(argv, run_main, ctl_main)
