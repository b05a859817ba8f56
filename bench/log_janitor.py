"""Log cleanup on a mass pod deletion: what removing N deleted pods' logs costs the gateway.

    python -m bench.log_janitor [--pods N] [--per-tick K] [--repeats R]

N pod log directories (one container log each) under a temporary log root, all live; then the
pods are deleted as a watch delivers them, K DELETED events per 1 ms read (K=1: one at a time,
the case of issue #16), until every directory is gone. Two ways, taking turns run by run in
this process so both see the same (shared, noisy) machine:

- baseline: every deletion wakes a full sweep (`LogJanitor.sweep`, as before issue #16;
  deletions that come while one runs share the next), which lists and stats every pod
  directory and builds the set of live pods;
- queued: `LogJanitor.pod_deleted(namespace, name, uid)` and its batched removals.

Figures: full directory listings, pod directories listed (each one a stat), the process's CPU
time (its worker threads included) and wall time from the first deletion to the last removal.
Only a `cleanup.pod_dirs` wrapper counts listings; nothing about time is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.logs import LogConfig, LogStore, cleanup, layout
from gateway.logs.janitor import LogJanitor

LISTED = {"listings": 0, "dirs": 0}
_pod_dirs = cleanup.pod_dirs


def _counted_pod_dirs(root: Path) -> list[tuple[Path, str]]:
    found = _pod_dirs(root)
    LISTED["listings"] += 1
    LISTED["dirs"] += len(found)
    return found


@dataclass
class Run:
    way: str
    listings: int
    dirs_listed: int
    cpu_s: float
    wall_s: float


def _make_pods(root: Path, count: int) -> list[str]:
    uids = [f"uid-{n:05d}" for n in range(count)]
    for uid in uids:
        directory = layout.container_log_dir(root, "default", f"pod-{uid}", uid, "app")
        directory.mkdir(parents=True)
        (directory / "0.log").write_bytes(b"2026-01-01T00:00:00.000000000Z stdout F hi\n")
    return uids


async def _baseline(janitor: LogJanitor, deletions: asyncio.Event) -> None:
    """The janitor before issue #16: a full sweep for every deletion (coalesced while busy)."""
    while True:
        await deletions.wait()
        deletions.clear()
        await janitor.sweep()


async def _one_run(way: str, pods: int, per_tick: int) -> Run:
    root = Path(tempfile.mkdtemp(prefix="wirelet-janitor-bench-"))
    try:
        uids = _make_pods(root, pods)
        store = LogStore(LogConfig(root=root, fsync=False))
        live = set(uids)
        janitor = LogJanitor(store, lambda: live, live.__contains__)
        ready = asyncio.Event()
        ready.set()
        deletions = asyncio.Event()
        worker = asyncio.ensure_future(
            janitor.run(ready) if way == "queued" else _baseline(janitor, deletions)
        )
        if way == "queued":
            await janitor.swept.wait()  # the start-up sweep is not what is measured
        delete: Callable[[str], None] = (
            (lambda uid: janitor.pod_deleted("default", f"pod-{uid}", uid))
            if way == "queued"
            else (lambda uid: deletions.set())
        )
        LISTED.update(listings=0, dirs=0)
        wall, cpu = time.perf_counter(), time.process_time()
        for n, uid in enumerate(uids):
            live.discard(uid)
            delete(uid)
            if (n + 1) % per_tick == 0:
                await asyncio.sleep(0.001)
        # The disk says when both ways are done, the same way for both.
        while any(not name.startswith(".") for name in os.listdir(root)):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        run = Run(
            way,
            LISTED["listings"],
            LISTED["dirs"],
            time.process_time() - cpu,
            time.perf_counter() - wall,
        )
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        return run
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _main(pods: int, per_tick: int, repeats: int) -> None:
    runs: list[Run] = []
    for _ in range(repeats):
        for way in ("baseline", "queued"):  # turn by turn: both see the same load
            runs.append(await _one_run(way, pods, per_tick))
    print(f"log cleanup of {pods} deleted pods, {per_tick} DELETED event(s) per 1 ms read")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for way in ("baseline", "queued"):
        mine = [run for run in runs if run.way == way]
        print(
            f"  {way:8} listings {statistics.median(r.listings for r in mine):7.0f}  "
            f"pod dirs listed {statistics.median(r.dirs_listed for r in mine):8.0f}  "
            f"CPU s {_spread([r.cpu_s for r in mine])}  wall s {_spread([r.wall_s for r in mine])}"
        )


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--per-tick", type=int, default=1, help="DELETED events per 1 ms read")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cleanup.pod_dirs = _counted_pod_dirs  # the janitor calls it through the module
    asyncio.run(_main(args.pods, args.per_tick, args.repeats))


if __name__ == "__main__":
    main()
