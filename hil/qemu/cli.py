"""Command line of the QEMU boards.

python -m hil.qemu --boards 2 --target cortex-m|avr [--target ...] --dir /tmp/devs [--prefix qemu-]
                  [--build DIR]
python -m hil.qemu ctl DIR list
python -m hil.qemu ctl DIR DEVICE reboot|hang|resume|unplug|replug|status
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from hil.emulator.control import send_control
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fleet = QemuFleet(args.dir, boards, build_dir=args.build, control_socket=True)
    async with fleet:
        for board in fleet.boards:
            print(f"{board.device_id} {board.tty} {fleet.symlink(board.device_id)}")
        print("ready", flush=True)
        await stop.wait()


def run_main(argv: Sequence[str]) -> int:
    args = build_run_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args))
    except (FirmwareBuildError, BoardError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def ctl_main(argv: Sequence[str]) -> int:
    args = build_ctl_parser().parse_args(argv)
    request = {"op": "list"} if args.device == "list" else {"op": args.op, "device": args.device}
    try:
        reply = send_control(args.dir, request, timeout=30.0)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "ctl":
        return ctl_main(args[1:])
    return run_main(args)
