"""USB vs serial transport: goodput and gateway CPU per MB on the same emulated device.

    python -m bench.usb_goodput [--quick] [--repeats N]

One emulated device (`hil.emulator`, unthrottled) runs a `flood` task; the gateway side is a
`DeviceSession` reading it either through `SerialTransport` on the device's pty, or through
`UsbTransport` (pyusb -> libusb-1.0 -> usbdevfs) on the same device presented as a raw USB device
by hil/emulator/usb_gadget.py under umockdev. Reported per transport: goodput (task output bytes
over START_TASK to exit), the gateway process's CPU seconds per MB during the flood, its CPU
while the link is up and idle (heartbeats only; for USB one IN transfer always posted), and for USB
the CPU of the emulation itself (the gadget answering every ioctl over umockdev's socket),
which a real USB host controller does in hardware. Median and min..max over the repeats; results
in bench/results/usb_goodput.json.

The USB figures measure the transport's code path on an emulated bus, not USB: every libusb
ioctl is a round trip to another process here (the gadget makes the node a FIFO so that poll()
waits for completions as on usbdevfs, see docs/usb.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from firmware_protocol import LinkConfig
from gateway.link.events import TaskExited, TaskOutput
from gateway.link.retry import RetryPolicy
from gateway.link.session import DeviceSession, SessionConfig
from gateway.transport.base import TransportOpener
from gateway.transport.serial import serial_opener
from gateway.transport.usb import usb_opener

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
NODE = "/dev/bus/usb/001/002"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


IDLE_S = 5.0  # link up, nothing to send but heartbeats: the gateway's CPU over this window


async def _measure(
    opener: TransportOpener, size: int, repeats: int
) -> tuple[list[dict[str, float]], float]:
    config = SessionConfig(
        handshake_timeout=10.0,
        open_timeout=10.0,
        backoff=RetryPolicy(initial=0.05, maximum=0.5),
        link=LinkConfig(),
    )
    runs: list[dict[str, float]] = []
    async with DeviceSession(opener, label="bench", config=config) as session:
        events = session.subscribe()
        await session.wait_up(30)
        for n in range(repeats):
            task = f"flood-{n}"
            got = 0
            cpu0, t0 = _cpu(), time.monotonic()
            await session.start_task(task, "flood", [str(size)])
            while True:
                event = await events.get(timeout_s=120)
                if isinstance(event, TaskOutput) and event.task_id == task:
                    got = max(got, event.end)
                    session.ack_output(task, event.stream, event.end)
                elif isinstance(event, TaskExited) and event.task_id == task:
                    break
            seconds, cpu = time.monotonic() - t0, _cpu() - cpu0
            assert got == size, f"{task}: {got} of {size} bytes"
            runs.append({"seconds": seconds, "bytes_per_s": size / seconds, "cpu_s": cpu})
        cpu0 = _cpu()
        await asyncio.sleep(IDLE_S)
        idle_percent = (_cpu() - cpu0) / IDLE_S * 100
    return runs, idle_percent


def _child(kind: str, where: str, size: int, repeats: int) -> None:
    """Measure in this process (under the gadget for USB) and print one JSON line."""
    opener = usb_opener(lambda: where) if kind == "usb" else serial_opener(lambda: where)
    runs, idle = asyncio.run(_measure(opener, size, repeats))
    print(json.dumps({"runs": runs, "idle_cpu_percent": idle, "process_cpu_s": _cpu()}), flush=True)


def _json_line(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith('{"runs"')]
    assert lines, text[-2000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _run(kind: str, pty: str, size: int, repeats: int) -> dict[str, Any]:
    me = [sys.executable, "-m", "bench.usb_goodput", "--child", kind]
    if kind == "serial":
        argv = [*me, "--where", pty, "--bytes", str(size), "--repeats", str(repeats)]
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return _json_line(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [
        "umockdev-wrapper",
        SYSTEM_PYTHON,
        "-m",
        "hil.emulator.usb_gadget",
        "--pty",
        pty,
        "--",
        *me,
        "--where",
        NODE,
        "--bytes",
        str(size),
        "--repeats",
        str(repeats),
    ]
    completed = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, check=True, stdin=subprocess.PIPE
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = _json_line(completed.stdout)
    children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["emulation_cpu_s"] = max(0.0, children - result["process_cpu_s"])
    return result


def _summary(result: dict[str, Any], size: int) -> dict[str, Any]:
    runs = result["runs"]
    mb = size / 1e6
    summary = {
        "goodput_kB_s": common.spread([r["bytes_per_s"] / 1e3 for r in runs]),
        "gateway_cpu_s_per_MB": common.spread([r["cpu_s"] / mb for r in runs]),
        "gateway_idle_cpu_percent": result["idle_cpu_percent"],
    }
    if "emulation_cpu_s" in result:
        summary["emulation_cpu_s_per_MB"] = result["emulation_cpu_s"] / (mb * len(runs))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.usb_goodput")
    parser.add_argument("--quick", action="store_true", help="1 MB, 2 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=("serial", "usb"), help=argparse.SUPPRESS)
    parser.add_argument("--where", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=4 << 20, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.where, args.bytes, args.repeats)
        return 0
    if shutil.which("umockdev-wrapper") is None:
        print("usb_goodput: umockdev is not installed (make system-deps)", file=sys.stderr)
        return 2
    size, repeats = (1 << 20, 2) if args.quick else (args.bytes, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "devs"
        directory.mkdir()
        emulator = subprocess.Popen(
            [sys.executable, "-m", "hil.emulator", "--devices", "1", "--dir", str(directory)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            while not any(directory.iterdir()):
                time.sleep(0.05)
            pty = os.path.realpath(next(directory.iterdir()))
            common.say(f"usb_goodput: {repeats} x {size} bytes over serial, then over USB")
            serial = _summary(_run("serial", pty, size, repeats), size)
            usb = _summary(_run("usb", pty, size, repeats), size)
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    report = {
        "benchmark": "usb_goodput",
        "machine": common.machine(),
        "bytes": size,
        "repeats": repeats,
        "serial": serial,
        "usb": usb,
        "usb_vs_serial_goodput": usb["goodput_kB_s"]["median"] / serial["goodput_kB_s"]["median"],
    }
    path = common.write_result("usb_goodput", report)
    for kind, figures in (("serial", serial), ("usb", usb)):
        line = (
            f"{kind:6} goodput {common.fmt(figures['goodput_kB_s'], ' kB/s', 0)}, gateway CPU "
            f"{common.fmt(figures['gateway_cpu_s_per_MB'], ' s/MB', 3)}, idle "
            f"{figures['gateway_idle_cpu_percent']:.1f}% of a core"
        )
        if "emulation_cpu_s_per_MB" in figures:
            line += f", emulation CPU {figures['emulation_cpu_s_per_MB']:.3f} s/MB"
        common.say(line)
    common.say(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
