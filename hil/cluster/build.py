"""Build the pinned control-plane binaries with `go build` into a cache outside the checkout."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# One pinned release; go.mod must agree (its replace lines map staging modules to v0.37.2).
KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.0"

MODULE_DIR = Path(__file__).resolve().parent

# Binary name -> Go main package, in build order (etcd first: smallest, proves the toolchain works).
PACKAGES: dict[str, str] = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
}

_STAMP = ".complete"
_HEARTBEAT_SECONDS = 30.0


class BuildError(RuntimeError):
    """`go build` failed or Go is missing."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the four control-plane executables."""

    bin_dir: Path

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def etcd(self) -> Path:
        return self.path("etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kube-controller-manager")

    @property
    def kube_scheduler(self) -> Path:
        return self.path("kube-scheduler")


def _module_hash() -> str:
    # Key the cache on go.mod/go.sum too, so a dependency change never reuses stale binaries.
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((MODULE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wirelet"


def bin_dir() -> Path:
    return cache_root() / f"k8s-{KUBERNETES_VERSION}-{_module_hash()}" / "bin"


def is_built(directory: Path | None = None) -> bool:
    directory = directory or bin_dir()
    if not (directory / _STAMP).is_file():
        return False
    return all(os.access(directory / name, os.X_OK) for name in PACKAGES)


def _ldflags() -> str:
    # Strip symbols (size) and stamp the release so /version and kubectl skew checks see it.
    major, minor, _patch = KUBERNETES_VERSION.lstrip("v").split(".")
    pkg = "k8s.io/component-base/version"
    stamps = [
        f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
    ]
    return " ".join(["-s", "-w", *stamps])


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never let go.mod's `go` line trigger a toolchain download; there is no network for that.
    env["GOTOOLCHAIN"] = "local"
    flags = env.get("GOFLAGS", "")
    if "-buildvcs" not in flags:
        env["GOFLAGS"] = f"{flags} -buildvcs=false".strip()
    return env


def _say(message: str) -> None:
    # Progress goes to stderr unconditionally: a cold build is minutes long and must not look hung.
    print(message, file=sys.stderr, flush=True)


def _build_one(go: str, name: str, package: str, out: Path) -> None:
    cmd = [go, "build", "-trimpath", "-ldflags", _ldflags(), "-o", str(out), package]
    log.debug("running %s", cmd)
    started = time.monotonic()
    _say(f"[hil.cluster] building {name} ({package})")
    proc = subprocess.Popen(cmd, cwd=MODULE_DIR, env=_go_env())
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(_HEARTBEAT_SECONDS):
            _say(f"[hil.cluster]   still building {name}: {time.monotonic() - started:.0f}s")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        code = proc.wait()
    finally:
        done.set()
        ticker.join()
    if code != 0:
        raise BuildError(f"go build {package} exited with {code}")
    _say(f"[hil.cluster] built {name} in {time.monotonic() - started:.0f}s")


def build(force: bool = False) -> Binaries:
    """Return the cached binaries, building any missing ones (all of them with force)."""
    directory = bin_dir()
    if is_built(directory) and not force:
        log.debug("control-plane binaries cached in %s", directory)
        return Binaries(directory)
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the `go` toolchain is not on PATH; it is needed to build the control plane"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _STAMP).unlink(missing_ok=True)
    started = time.monotonic()
    _say(f"[hil.cluster] building Kubernetes {KUBERNETES_VERSION} + etcd {ETCD_VERSION}")
    _say(f"[hil.cluster] into {directory}; a cold build takes several minutes")
    for name, package in PACKAGES.items():
        target = directory / name
        if target.exists() and not force:
            continue
        # Build to a temporary name and rename, so an interrupted build never leaves a half binary.
        partial = directory / f".{name}.partial"
        _build_one(go, name, package, partial)
        partial.replace(target)
    (directory / _STAMP).write_text(f"{KUBERNETES_VERSION} {ETCD_VERSION}\n")
    _say(f"[hil.cluster] control plane ready in {time.monotonic() - started:.0f}s")
    return Binaries(directory)


def require_built() -> Binaries:
    """Return the cached binaries or explain how to build them."""
    directory = bin_dir()
    if not is_built(directory):
        raise BuildError(
            f"control-plane binaries missing in {directory}; run `python -m hil.cluster build`"
        )
    return Binaries(directory)
