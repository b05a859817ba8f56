"""The baseline: virtual-kubelet's mock provider, built from the Go module proxy and cached.

    python -m bench.vk build

`bench/vk/go.mod` pins github.com/virtual-kubelet/virtual-kubelet; `go build` of its
`cmd/virtual-kubelet` main (which registers the mock provider) goes to
~/.cache/wirelet/vk-<version>-<hash>/virtual-kubelet, keyed like the control plane on go.mod/go.sum
and on the patches below. One process per node, as virtual-kubelet runs:
`--provider mock --nodename NAME`, every other flag at virtual-kubelet's default (10 pod sync
workers, client-go's 5 QPS / 10 burst).

What differs from upstream: one patch of ours, `bench/vk/mock-pods-lock.patch`, applied to a copy
of the module taken from the Go module cache (the build module `replace`s the module with that
copy; virtual-kubelet's source is never committed here). The mock provider keeps its pods in a
plain map that the pod controller's 10 workers read and write at once (CreatePod, UpdatePod,
DeletePod, GetPod, GetPods, the stats): under the benchmarks' fast scheduler (1000 QPS), about
one 1000-pod run in three lost a node to Go's "fatal error: concurrent map writes" in
CreatePod, and its pods never finished. The patch guards that map with a sync.RWMutex and
changes nothing else (no flag, worker count, timing or API call). v1.14.1 is the newest
release on the module proxy, so there is no fixed release to bump to.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import tail_lines
from hil.cluster.build import cache_root
from hil.cluster.local import LocalCluster, free_port

VK_VERSION = "v1.14.1"  # newest release on the module proxy; go.mod must agree
VK_MODULE = "github.com/virtual-kubelet/virtual-kubelet"
VK_PACKAGE = f"{VK_MODULE}/cmd/virtual-kubelet"
MODULE_DIR = Path(__file__).resolve().parent / "vk"
# Our changes to the module, applied in name order (`git apply`, paths relative to its root).
PATCHES = sorted(MODULE_DIR.glob("*.patch"))


class VkBuildError(RuntimeError):
    """virtual-kubelet could not be built (the baseline is then missing from the results)."""


def _module_hash() -> str:
    """go.mod, go.sum and every patch: a changed patch is a new binary, never a stale one."""
    digest = hashlib.sha256()
    for path in [MODULE_DIR / "go.mod", MODULE_DIR / "go.sum", *PATCHES]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def binary_path() -> Path:
    return cache_root() / f"vk-{VK_VERSION}-{_module_hash()}" / "virtual-kubelet"


def build() -> Path:
    """Return the cached binary, building it when missing (minutes on a cold Go cache)."""
    out = binary_path()
    if os.access(out, os.X_OK):
        return out
    go = shutil.which("go")
    if go is None:
        raise VkBuildError("the `go` toolchain is not on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / ".virtual-kubelet.partial"
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
    print(f"[bench.vk] building virtual-kubelet {VK_VERSION} into {out}", file=sys.stderr)
    started = time.monotonic()
    build_module = _patched_build_module(go, env, out.parent)
    cmd = [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), VK_PACKAGE]
    result = subprocess.run(cmd, cwd=build_module, env=env, check=False)
    if result.returncode != 0:
        raise VkBuildError(f"go build {VK_PACKAGE} exited with {result.returncode}")
    partial.replace(out)
    print(f"[bench.vk] built in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return out


def _patched_build_module(go: str, env: dict[str, str], root: Path) -> Path:
    """A copy of bench/vk whose go.mod replaces virtual-kubelet with a patched copy of the
    pinned release (root/src, from the Go module cache): the directory to `go build` in."""
    found = subprocess.run(
        [go, "mod", "download", "-json", f"{VK_MODULE}@{VK_VERSION}"],
        cwd=MODULE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise VkBuildError(f"go mod download {VK_MODULE}@{VK_VERSION}: {found.stderr.strip()}")
    source = root / "src"
    _remove_tree(source)  # a build cut short leaves a half-patched copy
    shutil.copytree(json.loads(found.stdout)["Dir"], source)
    _make_writable(source)  # the module cache is read-only, and so is a copy of it
    for patch in PATCHES:
        # The ceiling keeps git from taking an enclosing repository for this tree's root.
        applied = subprocess.run(
            ["git", "apply", "--verbose", str(patch)],
            cwd=source,
            env={**env, "GIT_CEILING_DIRECTORIES": str(root)},
            capture_output=True,
            text=True,
            check=False,
        )
        if applied.returncode != 0:
            raise VkBuildError(
                f"{patch.name} does not apply to {VK_MODULE}@{VK_VERSION}: "
                f"{applied.stderr.strip()}; update the patch for this version or drop it"
            )
    build_module = root / "build"
    _remove_tree(build_module)
    build_module.mkdir()
    for name in ("go.sum", "tools.go"):
        shutil.copyfile(MODULE_DIR / name, build_module / name)
    go_mod = (MODULE_DIR / "go.mod").read_text()
    (build_module / "go.mod").write_text(f"{go_mod}\nreplace {VK_MODULE} => ../src\n")
    return build_module


def _make_writable(tree: Path) -> None:
    for directory, _, files in os.walk(tree):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def _remove_tree(tree: Path) -> None:
    if tree.exists():
        _make_writable(tree)
        shutil.rmtree(tree)


def distinct_free_ports(count: int) -> list[int]:
    """`count` free ports, no two alike: each free_port() is released at once, so 100 draws
    from the ephemeral range repeat one about one time in six (a 1000x50 run failed on a
    virtual-kubelet that found its port taken by another of the fleet)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return list(ports)


class VkFleet:
    """`count` virtual-kubelet mock nodes named `<prefix>0000`.., one process each."""

    def __init__(
        self, cluster: LocalCluster, workdir: Path, prefix: str, count: int, pods: int
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.prefix = prefix
        self.count = count
        self.pods = pods
        self.names = [f"{prefix}{i:04d}" for i in range(count)]
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        binary = build()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mock.json"
        capacity = {"cpu": "100", "memory": "100Gi", "pods": str(self.pods)}
        config.write_text(json.dumps(dict.fromkeys(self.names, capacity)))
        cert, key = self.cluster.sign_serving_cert(["127.0.0.1", "localhost"], self.workdir)
        ports = distinct_free_ports(2 * len(self.names))
        for name in self.names:
            env: dict[str, Any] = {
                **os.environ,
                "KUBELET_PORT": str(ports.pop()),
                "APISERVER_CERT_LOCATION": str(cert),
                "APISERVER_KEY_LOCATION": str(key),
                "VKUBELET_POD_IP": "127.0.0.1",
            }
            log = (self.workdir / f"{name}.log").open("wb")
            proc = await asyncio.create_subprocess_exec(
                str(binary),
                "--provider",
                "mock",
                "--provider-config",
                str(config),
                "--nodename",
                name,
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--metrics-addr",
                f"127.0.0.1:{ports.pop()}",
                "--startup-timeout",
                "60s",
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
            log.close()
            self.procs.append(proc)

    def describe(self) -> str:
        """Which processes exited (with their codes) and the last lines of one of their logs:
        the cause of nodes that never got Ready."""
        exited = [
            (name, proc.returncode)
            for name, proc in zip(self.names, self.procs, strict=True)
            if proc.returncode is not None
        ]
        if not exited:
            return f"  all {len(self.procs)} virtual-kubelet processes running"
        codes = ", ".join(f"{name}: {code}" for name, code in exited[:10])
        first = exited[0][0]
        lines = [f"  {len(exited)} of {len(self.procs)} virtual-kubelet processes exited ({codes})"]
        lines.append(f"  last lines of {first}.log:")
        lines += [f"    {line[:300]}" for line in tail_lines(self.workdir / f"{first}.log", 5)]
        return "\n".join(lines)

    def rss_mb(self) -> float:
        total = 0
        for proc in self.procs:
            try:
                stat = Path(f"/proc/{proc.pid}/stat").read_text()
                total += int(stat[stat.rindex(")") + 2 :].split()[21]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                pass
        return total / 1e6

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self.procs.clear()


def main() -> None:
    if sys.argv[1:2] != ["build"]:
        print("usage: python -m bench.vk build", file=sys.stderr)
        sys.exit(2)
    print(build())


if __name__ == "__main__":
    main()
