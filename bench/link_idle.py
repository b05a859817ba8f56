"""The gateway's idle link cost, without a control plane: N emulated devices on ptys, each served
by a `DeviceSession` with the gateway's link defaults (5 s heartbeat), all in one process.

    python -m bench.link_idle [--devices N] [--window SECONDS] [--rounds R] [--baseline TREE]

Each round measures, for this tree and (with `--baseline`) for TREE's gateway code, the CPU the
sessions' process uses over the window once every link is up and has settled (% of one core,
from getrusage) and per device heartbeat (one device, one heartbeat interval: the device's PING
and whatever the gateway's own heartbeat costs in that interval, so trees that PING the device
at different rates compare per the same unit; the gateway's PINGs answered per second are
printed beside). The trees alternate, each round in the other order,
so that the load of a shared machine falls on both alike; the emulator (the device side) is
always this tree's, so only the gateway side differs. This is most of what a gateway serving
1000 idle devices spends besides its API requests (`python -m bench.scale` measures it all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

THIS_TREE = Path(__file__).resolve().parent.parent

SETTLE_S = 12.0  # after every link is up: the handshakes' task lists and first pings are done


def _links(directory: Path) -> list[Path]:
    """The devices' links (the emulator's control socket and the like start with a dot)."""
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _child(devices: int, window: float) -> dict[str, Any]:
    """Runs in a process whose gateway code is the tree under test."""
    from gateway.app import timers_from_config
    from gateway.link.session import DeviceSession
    from gateway.transport.serial import serial_opener

    config = timers_from_config({})[0]
    with tempfile.TemporaryDirectory(prefix="wirelet-link-idle-") as tmp:
        directory = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(THIS_TREE)}
        emulator = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hil.emulator", "--devices", str(devices), "--dir", tmp),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        try:
            while len(_links(directory)) < devices:
                if emulator.returncode is not None:
                    raise RuntimeError(f"the emulator exited with {emulator.returncode}")
                await asyncio.sleep(0.2)
            sessions = [
                DeviceSession(
                    serial_opener(lambda p=link: os.path.realpath(p)),  # type: ignore[misc]
                    label=link.name,
                    config=config,
                )
                for link in _links(directory)
            ]
            for session in sessions:
                session.start()
            try:
                await asyncio.gather(*(s.wait_up(120.0) for s in sessions))
                await asyncio.sleep(SETTLE_S)
                beats = sum(s.stats.heartbeats_sent for s in sessions)
                cpu, started = _cpu_s(), time.monotonic()
                await asyncio.sleep(window)
                cpu, elapsed = _cpu_s() - cpu, time.monotonic() - started
                beats = sum(s.stats.heartbeats_sent for s in sessions) - beats
            finally:
                await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        finally:
            emulator.terminate()
            await emulator.wait()
    device_beats = devices * elapsed / config.link.heartbeat_interval
    return {
        "cpu_percent": 100 * cpu / elapsed,
        "heartbeats_per_s": beats / elapsed,
        "cpu_us_per_heartbeat": 1e6 * cpu / beats if beats else float("nan"),
        "device_heartbeats_per_s": device_beats / elapsed,
        "cpu_us_per_device_heartbeat": 1e6 * cpu / device_beats,
    }


def _measure(tree: Path, devices: int, window: float) -> dict[str, Any]:
    from bench.tree_child import measure_in_tree  # not in the child: its tree may lack it

    return measure_in_tree(__file__, tree, ["--devices", str(devices), "--window", str(window)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.link_idle", description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another source tree: its gateway code")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import uvloop  # as the gateway runs (gateway.commands.run)

        print(json.dumps(uvloop.run(_child(args.devices, args.window))), flush=True)
        return
    from bench.tree_child import turns  # not in the child: its tree may lack it

    trees = {"this": THIS_TREE} | ({"baseline": args.baseline} if args.baseline else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    started = time.monotonic()
    for round_, name in turns(list(reversed(trees)), args.rounds):
        result = _measure(trees[name], args.devices, args.window)
        runs[name].append(result)
        print(
            f"  round {round_ + 1} {name}: {result['cpu_percent']:.2f}% of a core, "
            f"{result['device_heartbeats_per_s']:.0f} device heartbeats/s, "
            f"{result['cpu_us_per_device_heartbeat']:.0f} us per device heartbeat, "
            f"{result['heartbeats_per_s']:.0f} gateway PINGs answered/s "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    summary = {
        name: {
            "cpu_percent_median": statistics.median(r["cpu_percent"] for r in results),
            "cpu_us_per_device_heartbeat_median": statistics.median(
                r["cpu_us_per_device_heartbeat"] for r in results
            ),
        }
        for name, results in runs.items()
    }
    for name, figures in summary.items():
        print(
            f"{args.devices} devices, {name}: {figures['cpu_percent_median']:.2f}% of a core, "
            f"{figures['cpu_us_per_device_heartbeat_median']:.0f} us per device heartbeat "
            f"(median of {args.rounds})"
        )
    from bench import common

    common.write_result(
        "link_idle",
        {
            "benchmark": "link_idle",
            "machine": common.machine(),
            "devices": args.devices,
            "window_s": args.window,
            "runs": runs,
            "summary": summary,
            "elapsed_s": time.monotonic() - started,
        },
    )


if __name__ == "__main__":
    main()
