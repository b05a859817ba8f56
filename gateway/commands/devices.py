"""`wirelet devices`: find devices, shake hands with each, print what they say about themselves.

wirelet devices --dir /dev/serial/by-id       # every entry of a by-id style directory
wirelet devices --port /dev/ttyACM0 --port /dev/ttyUSB1
wirelet devices --dir DIR --json              # machine-readable
wirelet devices --usb cafe:4001               # raw USB boards by vid:pid, serial or bus path
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from firmware_protocol import LinkConfig
from gateway.devices.sources.usb import UsbSelector, list_usb_devices
from gateway.errors import LinkTimeout, WireletError
from gateway.link.events import DeviceFacts, SessionStats
from gateway.link.retry import RetryPolicy
from gateway.link.session import DeviceSession, SessionConfig
from gateway.transport.base import TransportOpener
from gateway.transport.serial import SerialSettings, serial_opener
from gateway.transport.usb import usb_opener

USB_NODE_PREFIX = "/dev/bus/usb/"
# How long to wait for each device's handshake when listing, seconds.
DEFAULT_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class DeviceReport:
    path: str
    facts: DeviceFacts | None
    stats: SessionStats
    tasks: int | None
    error: str


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="list attached devices with their handshake facts and link stats",
        description="Open each port, shake hands with the device, print a table.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        action="append",
        default=[],
        help="directory of device links (like /dev/serial/by-id); repeatable",
    )
    parser.add_argument("--port", action="append", default=[], help="a tty path; repeatable")
    parser.add_argument(
        "--usb",
        action="append",
        default=[],
        metavar="SELECTOR",
        help="raw USB devices: VID:PID, VID:PID:SERIAL, serial=S, a bus path (1-1.2) or "
        "/dev/bus/usb/BBB/DDD; repeatable",
    )
    parser.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        help="seconds to wait for each handshake (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def find_ports(dirs: Sequence[Path], ports: Sequence[str]) -> list[str]:
    """Ports named on the command line plus every non-hidden entry of each directory."""
    found: list[str] = list(ports)
    for directory in dirs:
        if not directory.is_dir():
            raise WireletError(f"--dir {directory}: not a directory")
        found += sorted(str(p) for p in directory.iterdir() if not p.name.startswith("."))
    return list(dict.fromkeys(found))


def find_usb_nodes(selectors: Sequence[str]) -> list[str]:
    """The /dev/bus/usb nodes of the USB devices the selectors match (from sysfs, no open)."""
    parsed = [UsbSelector.parse(text) for text in selectors]
    nodes: list[str] = []
    for selector in parsed:
        matching = [d.node for d in list_usb_devices() if selector.matches(d)]
        if not matching:
            raise WireletError(f"--usb {selector.text}: no attached USB device matches")
        nodes += matching
    return list(dict.fromkeys(nodes))


async def probe(path: str, wait_s: float, baud: int) -> DeviceReport:
    """Handshake with one device and read its task list; never raises for a device problem.

    A probe must never make a device discard anything: the session is observe-only (it does
    not acknowledge output, exit reports or logs, which the device keeps for the gateway that
    serves it). A device whose unacknowledged output fills its window before the task list
    reply therefore shows its handshake facts without a task count."""
    config = SessionConfig(
        handshake_timeout=wait_s,
        open_timeout=wait_s,
        backoff=RetryPolicy(initial=0.05, maximum=0.5),
        link=LinkConfig(),
    )
    opener: TransportOpener
    if path.startswith(USB_NODE_PREFIX):
        opener = usb_opener(lambda: path)
    else:
        # Resolve symlinks at open time so the table shows the tty actually reached.
        opener = serial_opener(lambda: os.path.realpath(path), SerialSettings(baudrate=baud))
    tasks: int | None = None
    error = ""
    if not path.startswith(USB_NODE_PREFIX) and not await asyncio.to_thread(os.path.exists, path):
        return DeviceReport(path, None, SessionStats(), None, "no such port")
    label = os.path.basename(path)
    async with DeviceSession(opener, label=label, config=config, observe_only=True) as session:
        try:
            await session.wait_up(wait_s)
            tasks = len(await session.list_tasks())
        except LinkTimeout as exc:
            error = str(exc)
            if session.facts is not None:
                error = (
                    f"answered the handshake but not LIST_TASKS within {wait_s} s (output it "
                    "keeps for its gateway may be queued ahead; a probe leaves it there)"
                )
        except WireletError as exc:
            error = str(exc)
        return DeviceReport(path, session.facts, dataclasses.replace(session.stats), tasks, error)


async def probe_all(paths: Sequence[str], wait_s: float, baud: int) -> list[DeviceReport]:
    return list(await asyncio.gather(*(probe(p, wait_s, baud) for p in paths)))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n}{unit}" if unit == "B" else f"{n:.0f}{unit}"
        n //= 1024
    return str(n)


def format_table(reports: Sequence[DeviceReport]) -> str:
    header = (
        "DEVICE",
        "PORT",
        "STATE",
        "FIRMWARE",
        "PROTO",
        "SLOTS",
        "TASKS",
        "MEMORY",
        "APPS",
        "RTT(ms)",
        "RETX",
        "CRC-ERR",
        "RX/TX",
        "ERROR",
    )
    rows = [header]
    for r in reports:
        f = r.facts
        rtt = r.stats.rtt_smoothed
        rows.append(
            (
                f.device_id if f else "-",
                f.port if f else r.path,
                "up" if f and not r.error else "busy" if f else "down",
                f"{f.firmware_name} {f.firmware_version}" if f else "-",
                str(f.protocol_version) if f else "-",
                str(f.task_slots) if f else "-",
                str(r.tasks) if r.tasks is not None else "-",
                _size(f.memory_bytes) if f else "-",
                ",".join(f.apps) if f else "-",
                f"{rtt * 1000:.1f}" if rtt is not None else "-",
                str(r.stats.retransmits),
                str(r.stats.crc_errors),
                f"{_size(r.stats.bytes_in)}/{_size(r.stats.bytes_out)}",
                r.error or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _as_json(reports: Sequence[DeviceReport]) -> str:
    def encode(r: DeviceReport) -> dict[str, Any]:
        stats = dataclasses.asdict(r.stats)
        stats["state"] = r.stats.state.value
        return {
            "path": r.path,
            "facts": dataclasses.asdict(r.facts) if r.facts else None,
            "stats": stats,
            "tasks": r.tasks,
            "error": r.error,
        }

    return json.dumps([encode(r) for r in reports], indent=2)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        paths = find_ports(args.dir, args.port)
        paths += find_usb_nodes(getattr(args, "usb", []))
    except WireletError as exc:
        print(f"wirelet devices: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print(
            "wirelet devices: no ports given or found (use --dir, --port or --usb)",
            file=sys.stderr,
        )
        return 2
    reports = asyncio.run(probe_all(paths, args.wait, args.baud))
    print(_as_json(reports) if args.json else format_table(reports), file=out)
    return 0 if all(r.facts and not r.error for r in reports) else 1
