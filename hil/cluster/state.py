"""The state file a detached `up` leaves behind so `status` and `down` can find the cluster."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


def default_run_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "wirelet" if runtime else Path.home() / ".cache" / "wirelet" / "run"
    return base / "cluster"


@dataclass(frozen=True)
class ClusterState:
    """What a running detached cluster publishes: its supervisor and how to reach it."""

    supervisor_pid: int
    run_dir: str
    kubeconfig: str
    server: str
    ca_cert: str
    pids: dict[str, int]

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        # Atomic rename: readers see either no state or a complete one.
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> ClusterState | None:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(**data)


def state_path(run_dir: Path) -> Path:
    return run_dir / "state.json"
