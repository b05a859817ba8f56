"""Link goodput: task output bytes per second end to end, emulated device -> pty -> gateway session.

    python -m bench.link_goodput [--quick] [--repeats N]

For each line rate (115200 and 921600 baud pacing, where the emulator limits each direction to
baud/10 bytes/s as an 8N1 UART does, and unthrottled) a `flood` task writes a known number of
bytes; the gateway's `DeviceSession` receives them as TASK_OUTPUT events. Goodput is task-output
bytes over the time from START_TASK to the last byte, reported as % of baud/10 where paced.
Median and min..max over the repeats. Results also go to bench/results/link_goodput.json.

The gateway end uses the gateway's shipped link settings (`gateway.app.GATEWAY_LINK_DEFAULTS` over
`LinkConfig`), the device end the default `LinkConfig` and profile (max_frame 512, window 4),
except in the frame-size cases: at 115200 baud, a device declaring max_frame 256, 512, 1024 and
2048 (it sends frames no larger than it declares, nor than the gateway accepts). The task id is
one as the gateway makes them (40 bytes). The figures are what a default deployment gets, not a
tuned best case.

Every case runs twice per repeat, alternating, against the same gateway code: `current` firmware
(the emulator as it is: task handles, so output frames carry a one-byte handle instead of the task
id, and retransmission timers that count from when a frame has left the UART) and `before`
firmware (a profile without optional protocol features and with timers counted from queueing:
the device side as it was, which the gateway must keep serving). Wire efficiency counts the
device's bytes from START_TASK on (task output over everything the device put on the line). The
report also shows where the bytes of one full output frame go, per frame size and form.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import firmware_protocol as wire
from firmware_protocol import LinkConfig
from gateway.app import GATEWAY_LINK_DEFAULTS
from gateway.link.events import TaskExited, TaskOutput
from gateway.link.session import DeviceSession, SessionConfig
from gateway.runtime.task_ids import TaskName
from gateway.transport.serial import SerialSettings, serial_opener
from hil.emulator.apps import flood_bytes
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile

RESULTS = (
    Path(os.environ.get("WIRELET_BENCH_RESULTS") or Path(__file__).parent / "results")
    / "link_goodput.json"
)
TARGET_PERCENT_115200 = 90.0
# At 115200 baud, for a device declaring frames of 1 KB or more (issue 16).
TARGET_PERCENT_LARGE_FRAMES = 95.0
FRAME_SIZES = (256, 512, 1024, 2048)
# A task id as the gateway makes them (`<pod uid>/<container>/<restart>`, 40 bytes): every
# TASK_OUTPUT frame carries it, so it is part of what a deployment pays per frame.
TASK_ID = str(TaskName("0b5e1c2a-7d3f-4e6b-9a1c-2f4d6e8a0b1c", 0, 0))


FIRMWARES = ("current", "before")


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    name: str
    baud: int | None  # None: unthrottled
    size: int  # bytes of task output per run
    device_max_frame: int | None = None  # None: the device's default LinkConfig


def device_profile(case: Case, firmware: str) -> DeviceProfile:
    profile = DeviceProfile(device_id="bench-0", baud=case.baud)
    if case.device_max_frame is not None:
        profile = dataclasses.replace(profile, max_frame=case.device_max_frame)
    if firmware == "before":
        # No task handles (TASK_OUTPUT names the task), timers from queueing.
        profile = dataclasses.replace(profile, protocol_features=0, line_aware_timers=False)
    return profile


def cases(quick: bool) -> list[Case]:
    # Sizes give runs of a few seconds at the paced rates.
    scale = 4 if quick else 1
    return [
        Case("115200", 115200, 64 * 1024 // scale),
        *(
            Case(f"115200 frame {n}", 115200, 64 * 1024 // scale, device_max_frame=n)
            for n in FRAME_SIZES
        ),
        Case("921600", 921600, 512 * 1024 // scale),
        Case("unthrottled", None, 8 * 1024 * 1024 // scale),
    ]


def gateway_link() -> LinkConfig:
    """The link settings a gateway runs with when its config says nothing."""
    return LinkConfig(**GATEWAY_LINK_DEFAULTS)


async def one_run(case: Case, link: LinkConfig, firmware: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wirelet-bench-") as tmp:
        directory = Path(tmp)
        profile = device_profile(case, firmware)
        config = SessionConfig(link=gateway_link())
        path = directory / "bench-0"
        opener = serial_opener(
            lambda: os.path.realpath(path), SerialSettings(baudrate=case.baud or 115200)
        )
        async with (
            EmulatedFleet(directory, [profile], link_config=link, control_socket=False) as fleet,
            DeviceSession(opener, label="bench-0", config=config) as session,
        ):
            await session.wait_up(10)
            sub = session.subscribe()
            device = fleet.device("bench-0")
            wire_before = device.figures().bytes_out
            started = time.perf_counter()
            await session.start_task(TASK_ID, "flood", ["flood", str(case.size)])
            received = 0
            last = started
            while True:
                event = await sub.get(60)
                if isinstance(event, TaskOutput):
                    received += len(event.data)
                    last = time.perf_counter()
                    session.ack_output(event.task_id, event.stream, event.end)
                elif isinstance(event, TaskExited):
                    break
            sub.close()
            elapsed = last - started
            figures = device.figures()
            if received != case.size:
                raise RuntimeError(f"received {received} of {case.size} bytes")
            return {
                "seconds": elapsed,
                "goodput_Bps": received / elapsed,
                "wire_bytes_device_to_gateway": float(figures.bytes_out - wire_before),
                "retransmits": float(figures.retransmits),
                "task_handles": float(device.link.task_handles),
            }


def summarize(case: Case, firmware: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    rates = [r["goodput_Bps"] for r in runs]
    summary: dict[str, Any] = {
        "case": case.name,
        "firmware": firmware,
        "task_handles": bool(runs[0]["task_handles"]),
        "baud": case.baud,
        "device_max_frame": case.device_max_frame,
        "bytes": case.size,
        "repeats": len(runs),
        "goodput_Bps_median": statistics.median(rates),
        "goodput_Bps_min": min(rates),
        "goodput_Bps_max": max(rates),
        # Wire efficiency: task bytes over all bytes the device put on the line.
        "efficiency_percent": 100.0
        * case.size
        / statistics.median(r["wire_bytes_device_to_gateway"] for r in runs),
        "retransmits_median": statistics.median(r["retransmits"] for r in runs),
        "retransmits_max": max(r["retransmits"] for r in runs),
    }
    if case.baud:
        line = case.baud / 10
        summary["percent_of_line"] = {
            "median": 100.0 * statistics.median(rates) / line,
            "min": 100.0 * min(rates) / line,
            "max": 100.0 * max(rates) / line,
        }
    return summary


def print_summary(s: dict[str, Any]) -> None:
    rate = s["goodput_Bps_median"]
    line = f"{s['case']:>18} {s['firmware']:>7}: {rate / 1000:8.1f} kB/s"
    line += f" ({s['goodput_Bps_min'] / 1000:.1f}..{s['goodput_Bps_max'] / 1000:.1f})"
    if "percent_of_line" in s:
        p = s["percent_of_line"]
        line += f"  {p['median']:5.1f}% of baud/10 ({p['min']:.1f}..{p['max']:.1f})"
    line += f"  wire efficiency {s['efficiency_percent']:.1f}%"
    line += f"  retransmits {s['retransmits_median']:.0f} (max {s['retransmits_max']:.0f})"
    print(line, flush=True)


def frame_breakdown(frame: int) -> dict[str, dict[str, int]]:
    """Where the bytes of one full output frame go, as TASK_OUTPUT (40-byte task id) and as
    TASK_DATA (task handle), at a stream offset of 32 KiB (a 3-byte uint), carrying what the
    `flood` app writes."""
    offset = 32 * 1024
    forms: dict[str, dict[str, int]] = {}
    id_len = len(TASK_ID)
    for form in ("task_output", "task_data"):
        if form == "task_output":
            data = wire.max_output_data(frame, id_len, offset=offset)
            msg: wire.TaskOutput | wire.TaskData = wire.TaskOutput(
                TASK_ID, wire.OutputStream.STDOUT, offset, flood_bytes(offset, data)
            )
            naming = id_len + 2  # str8 header and the id
        else:
            data = wire.max_task_data(frame, offset=offset)
            msg = wire.TaskData(0, wire.OutputStream.STDOUT, offset, flood_bytes(offset, data))
            naming = 1  # the handle
        built = wire.frame_for(msg, seq=1, ack=1)
        raw = len(built.raw())
        on_wire = len(built.to_bytes())
        forms[form] = {
            "frame": raw,
            "header_and_crc": wire.FRAME_OVERHEAD,
            "task_naming": naming,
            "msgpack_other": raw - wire.FRAME_OVERHEAD - naming - data,
            "cobs_and_delimiter": on_wire - raw,
            "data": data,
            "wire": on_wire,
        }
    return forms


def print_breakdown(frame: int, forms: dict[str, dict[str, int]]) -> None:
    for form, b in forms.items():
        print(
            f"  frame {frame:>4} as {form:<11}: header+CRC {b['header_and_crc']}, task"
            f" {b['task_naming']}, other msgpack {b['msgpack_other']}, COBS+delimiter"
            f" {b['cobs_and_delimiter']}, data {b['data']}: data/wire"
            f" {100 * b['data'] / b['wire']:.1f}%",
            flush=True,
        )


async def main_async(quick: bool, repeats: int) -> dict[str, Any]:
    link = LinkConfig()
    breakdown = {}
    print(
        "where one full output frame's bytes go (stream offset 32 KiB); the gateway accepts"
        f" frames up to {gateway_link().max_frame}, so a device declaring more sends those:"
    )
    for frame in FRAME_SIZES:
        breakdown[frame] = frame_breakdown(frame)
        print_breakdown(frame, breakdown[frame])
    all_results = []
    for case in cases(quick):
        runs: dict[str, list[dict[str, float]]] = {f: [] for f in FIRMWARES}
        for _ in range(repeats):
            for firmware in FIRMWARES:  # alternating, so load changes hit both alike
                runs[firmware].append(await one_run(case, link, firmware))
        for firmware in FIRMWARES:
            summary = summarize(case, firmware, runs[firmware])
            print_summary(summary)
            all_results.append(summary)
    results = [r for r in all_results if r["firmware"] == "current"]
    paced = next(r for r in results if r["case"] == "115200")
    verdict = paced["percent_of_line"]["median"] >= TARGET_PERCENT_115200
    print(f"target >= {TARGET_PERCENT_115200:.0f}% at 115200: {'met' if verdict else 'NOT met'}")
    large = [r for r in results if (r["device_max_frame"] or 0) >= 1024]
    large_met = all(r["percent_of_line"]["median"] >= TARGET_PERCENT_LARGE_FRAMES for r in large)
    print(
        f"target >= {TARGET_PERCENT_LARGE_FRAMES:.0f}% at 115200 with frames of 1 KB or more: "
        f"{'met' if large_met else 'NOT met'}"
    )
    return {
        "benchmark": "link_goodput",
        "link_config": dataclasses.asdict(link),
        "gateway_link_config": dataclasses.asdict(gateway_link()),
        "load_average": os.getloadavg(),
        "frame_breakdown": breakdown,
        "target_large_frames_met": large_met,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": quick,
        "target_115200_met": verdict,
        "results": all_results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.link_goodput", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller transfers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    args = parser.parse_args()
    report = asyncio.run(main_async(args.quick, args.repeats))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
