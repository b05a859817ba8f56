"""Link goodput against real firmware on an emulated board: task output bytes per second from the
reference firmware's `flood` app, board UART (QEMU, pty) -> gateway `DeviceSession`.

    python -m bench.qemu_goodput [--quick] [--repeats N]

QEMU does not pace its UARTs, so this is the firmware's and the link's own ceiling (the CPU
emulation, the library's framing and window, the pty), not a line rate. Median and min..max over
the repeats. Results also go to bench/results/qemu_goodput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.link.events import TaskExited, TaskOutput
from gateway.link.session import DeviceSession
from gateway.transport.serial import serial_opener
from hil.qemu import QemuFleet, missing_tools
from hil.qemu.targets import TARGETS

RESULTS = (
    Path(os.environ.get("WIRELET_BENCH_RESULTS") or Path(__file__).parent / "results")
    / "qemu_goodput.json"
)


async def one_run(session: DeviceSession, task_id: str, size: int) -> float:
    sub = session.subscribe()
    started = time.perf_counter()
    await session.start_task(task_id, "flood", ["flood", str(size)], [])
    received = 0
    last = started
    while True:
        event = await sub.get(120)
        if isinstance(event, TaskOutput) and event.task_id == task_id:
            received += len(event.data)
            last = time.perf_counter()
            session.ack_output(event.task_id, event.stream, event.end)
        elif isinstance(event, TaskExited) and event.task_id == task_id:
            break
    sub.close()
    if received != size:
        raise RuntimeError(f"received {received} of {size} bytes")
    return received / (last - started)


async def bench_target(name: str, size: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wirelet-bench-") as tmp:
        async with QemuFleet(tmp, {f"bench-{name}": name}) as fleet:
            link = str(fleet.symlink(f"bench-{name}"))
            async with DeviceSession(serial_opener(lambda: link), label=name) as session:
                await session.wait_up(30)
                rates = [await one_run(session, f"flood/{i}", size) for i in range(repeats)]
    return {
        "target": name,
        "board": TARGETS[name].description,
        "bytes": size,
        "repeats": repeats,
        "goodput_Bps_median": statistics.median(rates),
        "goodput_Bps_min": min(rates),
        "goodput_Bps_max": max(rates),
    }


async def main_async(quick: bool, repeats: int) -> list[dict[str, Any]]:
    size = 64 * 1024 if quick else 512 * 1024
    results = []
    for name, target in TARGETS.items():
        missing = missing_tools(target)
        if missing:
            print(f"{name:>9}: skipped ({', '.join(missing)} missing: run `make system-deps`)")
            continue
        r = await bench_target(name, size, repeats)
        results.append(r)
        print(
            f"{name:>9}: {r['goodput_Bps_median'] / 1000:8.1f} kB/s "
            f"({r['goodput_Bps_min'] / 1000:.1f}..{r['goodput_Bps_max'] / 1000:.1f}), "
            f"{size} B x {repeats}  [{r['board']}]",
            flush=True,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 KiB per run instead of 512 KiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.quick, args.repeats))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"targets": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
