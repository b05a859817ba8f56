"""Replug: how long from plugging a device back in until its node is Ready again.

    python -m bench.replug [--quick] [--repeats N]

Three emulated devices, an in-process gateway with the shipped defaults (link timers, reconnect
back-off up to 5 s), devices found through the directory source as on a host without udev.
Each round pulls one device, waits until its node is NotReady, leaves it unplugged for a while
(short, and longer than the 5 s back-off ceiling, where a session that only retried on its
back-off schedule would be asleep), then plugs it back in under a new tty name. Figures from the
plug: the session up (handshake and task reconcile done, gateway side) and the node Ready
(seen by a watch on the API). Results also go to bench/results/replug.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common, processes
from bench.common import say, spread
from gateway.app import Gateway
from gateway.config import load_config
from hil.cluster.local import LocalCluster
from hil.emulator.fleet import EmulatedFleet
from hil.emulator.profile import DeviceProfile


async def rounds(
    api: Any, gateway: Gateway, fleet: EmulatedFleet, node: str, *, absent_s: float, repeats: int
) -> dict[str, Any]:
    device = fleet.devices[0]
    key = str(fleet.symlink(device.device_id))
    to_up: list[float] = []
    to_ready: list[float] = []
    async with common.NodeReadiness(api, node) as readiness:
        for _ in range(repeats):
            await common.wait_until("node Ready", lambda: readiness.ready, 60)
            device.unplug()
            await common.wait_until("node NotReady", lambda: not readiness.ready, 60)
            await asyncio.sleep(absent_s)
            assert gateway.devices is not None
            session = gateway.devices.sessions[key]
            plugged = time.time()
            device.plug()
            await session.wait_up(60)
            to_up.append(time.time() - plugged)
            await common.wait_until("node Ready again", lambda: readiness.ready, 60)
            to_ready.append(readiness.since - plugged)
            say(
                f"  unplugged {absent_s:.1f}s: session up {to_up[-1] * 1000:.0f} ms, "
                f"node Ready {to_ready[-1] * 1000:.0f} ms after plug"
            )
    return {
        "absent_s": absent_s,
        "plug_to_session_up_s": spread(to_up),
        "plug_to_node_ready_s": spread(to_ready),
    }


async def run(cluster: LocalCluster | None, quick: bool, repeats: int) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:4]
    prefix = f"rp{suffix}-"
    profiles = [DeviceProfile(device_id=f"d{i:03d}", serial=f"{i:04d}") for i in range(3)]
    node = f"{prefix}d000"
    results: list[dict[str, Any]] = []
    async with common.cluster_or(cluster) as cl:
        api = await common.admin_api(cl)
        with tempfile.TemporaryDirectory(prefix="wirelet-bench-replug-") as tmp:
            work = Path(tmp)
            config = load_config(
                processes.gateway_config(cl, work / "gw", work / "devices", prefix)
            )
            try:
                async with (
                    EmulatedFleet(work / "devices", profiles, control_socket=False) as fleet,
                    Gateway(config) as gateway,
                ):
                    for absent in (0.5, 2.0 if quick else 7.0):
                        results.append(
                            await rounds(
                                api, gateway, fleet, node, absent_s=absent, repeats=repeats
                            )
                        )
            finally:
                await common.delete_nodes(api, [f"{prefix}d{i:03d}" for i in range(3)])
                await api.close()
    return {"name": "replug", "machine": common.machine(), "devices": 3, "rounds": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, quick_help="fewer rounds", repeats=(10, 3), what="rounds")
    args = parser.parse_args()
    report = asyncio.run(run(None, args.quick, common.repeats_of(args)))
    for r in report["rounds"]:
        say(
            f"replug after {r['absent_s']:.1f}s unplugged: session up "
            f"{common.fmt(r['plug_to_session_up_s'], ' s', 3)}; node Ready "
            f"{common.fmt(r['plug_to_node_ready_s'], ' s', 3)}"
        )
    common.write_result("replug", report)


if __name__ == "__main__":
    main()
