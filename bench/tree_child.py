"""Measuring another source tree's code beside this one's: a benchmark script runs itself again
as a child process whose `gateway` comes from the tree under test, and the trees take turns.

Used by the micro-benchmarks that take `--baseline TREE` (`git archive main | tar -x -C TREE`).
Import it outside the child's code path only: the tree a child runs may not have this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def measure_in_tree(script: str, tree: Path, args: Sequence[str]) -> dict[str, Any]:
    """Run `script --child ARGS` with `tree` first on the import path; its last line of output
    is the JSON result. -P: the script's own directory must not shadow the tree's packages."""
    argv = [sys.executable, "-P", script, "--child", *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {tree} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def turns(names: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) for every run: each round runs every name, the order reversed every other
    round, so neither tree always runs first on a machine whose load drifts."""
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            yield round_, name
