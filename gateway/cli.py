"""The `wirelet` command line: the gateway's front door."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.commands import bootstrap, demo, devices, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wirelet",
        description="Run microcontrollers attached over serial or USB as Kubernetes nodes.",
    )
    parser.add_argument("--version", action="version", version=f"wirelet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.register(subparsers)
    demo.register(subparsers)
    devices.register(subparsers)
    bootstrap.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
