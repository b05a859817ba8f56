"""CPU of one log flush of a quiet container: what each line of a `forever` pod costs the gateway.

    python -m bench.log_flush [--writers N] [--flushes F] [--repeats R] [--dir DIR]
                              [--baseline TREE]

N container logs (default 200) on the gateway's own writer (`gateway.logs`, fdatasync on), each
fed one short line with its device offset and flushed, F times over (default 10, after one
first flush each): the path of a pod that prints a line every few seconds, as `bench.pods`'s
pods do (one flush per line: write, the `<restart>.offsets` intent record, fdatasync, in the
I/O thread). Printed per run: process CPU (user, system) and wall time per flush, read from
getrusage around the flushes only. The event loop is uvloop, as in the gateway.

`--baseline TREE` also runs the writer of another source tree (`git archive main | tar -x -C
TREE`), the two taking turns run by run (order alternating), so the comparison comes from one
run on the same (shared, noisy) machine. Each run is a child process importing `gateway` from
its tree; DIR (default: a temporary directory under /var/tmp, a disk, not a tmpfs) holds the logs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

THIS_TREE = Path(__file__).resolve().parent.parent


def _child(writers: int, flushes: int, directory: Path) -> None:
    """One run, in a process of its own whose `gateway` comes from the tree under test."""
    import resource
    import time

    import uvloop

    from gateway.logs import LogConfig, LogStore, Stream

    async def run() -> dict[str, float]:
        store = LogStore(LogConfig(root=directory))
        logs = []
        for i in range(writers):
            store.mark_instance("bench", f"pod{i}", f"uid-{i:05d}", "main", 0)
            logs.append(store.open_writer("bench", f"pod{i}", f"uid-{i:05d}", "main", 0))
        ends = [0] * writers

        async def line(i: int, n: int) -> None:
            data = f"tick {n}\n".encode()
            ends[i] += len(data)
            logs[i].write(Stream.STDOUT, data, end=ends[i])
            await logs[i].flush()

        for i in range(writers):
            await line(i, 0)  # the first flush of a log also syncs what it found
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for n in range(1, flushes + 1):
            for i in range(writers):
                await line(i, n)
        after, end = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for writer in logs:
            await writer.close()
        count = writers * flushes
        return {
            "user_us": (after.ru_utime - before.ru_utime) / count * 1e6,
            "sys_us": (after.ru_stime - before.ru_stime) / count * 1e6,
            "wall_us": (end - start) / count * 1e6,
        }

    print(json.dumps(uvloop.run(run())))


def _run(tree: Path, writers: int, flushes: int, parent: Path) -> dict[str, float]:
    from bench.tree_child import measure_in_tree  # not in the child: its tree may lack it

    with tempfile.TemporaryDirectory(dir=parent, prefix="wirelet-log-flush-") as directory:
        args = ["--writers", str(writers), "--flushes", str(flushes), "--dir", directory]
        return measure_in_tree(__file__, tree, args)


def _line(name: str, runs: list[dict[str, float]]) -> str:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    cpu = [r["user_us"] + r["sys_us"] for r in runs]
    spread = f"{min(cpu):.0f}..{max(cpu):.0f}"
    return (
        f"{name:>9}: CPU per flush {statistics.median(cpu):6.0f} us ({spread};"
        f" user {med('user_us'):.0f}, system {med('sys_us'):.0f}), wall {med('wall_us'):.0f} us"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=200)
    parser.add_argument("--flushes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--baseline", type=Path, help="another source tree, measured alongside")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.writers, args.flushes, args.dir)
        return
    trees = {"this": THIS_TREE}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    from bench.tree_child import turns  # not in the child: its tree may lack it

    for _, name in turns(list(trees), args.repeats):
        runs[name].append(_run(trees[name], args.writers, args.flushes, args.dir))
    print(f"{args.writers} logs x {args.flushes} flushes of one line, {args.repeats} runs each:")
    for name in trees:
        print(_line(name, runs[name]))
    if args.baseline:
        this, base = (
            statistics.median(r["user_us"] + r["sys_us"] for r in runs[name])
            for name in ("this", "baseline")
        )
        print(f"CPU per flush, this / baseline: {this / base:.2f}x")


if __name__ == "__main__":
    main()
