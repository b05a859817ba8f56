"""`wirelet demo`: a local control plane, three emulated devices and the gateway, in one command.

Everything is real: etcd, kube-apiserver, controller-manager and scheduler on loopback, devices
on pseudo-terminals speaking the wire protocol, and the gateway between them. `--check` runs the
sample pod to completion, prints its logs and exits 0, so CI can prove the demo works.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.commands.run import setup_logging
from gateway.config import config_from_mapping, loopback_settings
from gateway.kube.api import KubeApiError

log = logging.getLogger(__name__)

DEMO_DEVICES = 3
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHECK_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "demo-check"},
    "spec": {
        "restartPolicy": "Never",
        "nodeSelector": {"type": "virtual-kubelet"},
        "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        "containers": [{"name": "counter", "image": "counter", "args": ["5", "100"]}],
    },
}
CHECK_TIMEOUT_S = 120.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="local control plane + 3 emulated devices + the gateway",
        description="Start everything locally and print kubectl commands to try.",
    )
    parser.add_argument("--devices", type=int, default=DEMO_DEVICES, help="emulated devices")
    parser.add_argument(
        "--check", action="store_true", help="run a sample pod to completion, print logs, exit"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from hil.cluster.build import build
    from hil.cluster.local import LocalCluster

    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("gateway").setLevel(logging.WARNING)
    binaries = build()
    workdir = Path(tempfile.mkdtemp(prefix="wirelet-demo-"))
    try:
        with LocalCluster(workdir / "cluster", binaries=binaries) as cluster:
            return asyncio.run(_run(cluster, workdir, args.devices, args.check))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _run(cluster: Any, workdir: Path, count: int, check: bool) -> int:
    from hil.cluster.node_address import shared_node_address
    from hil.emulator.fleet import EmulatedFleet
    from hil.emulator.profile import DeviceProfile

    device_dir = workdir / "devices"
    device_dir.mkdir()
    # A non-loopback address on this machine only, so the API server's node proxy works too.
    address = shared_node_address()
    hosts = ["127.0.0.1", "localhost", *([address.ip] if address else [])]
    settings = loopback_settings(
        **cluster.gateway_credentials(hosts, workdir),
        device_dir=str(device_dir),
        log_dir=str(workdir / "pods"),
    )
    if address is not None:
        settings["kubelet"].update(address=address.ip, node_ip=address.ip)
    config = config_from_mapping(settings, "demo")
    profiles = [DeviceProfile(device_id=f"demo-{i}", serial=f"{i:04d}") for i in range(count)]
    async with EmulatedFleet(device_dir, profiles) as _fleet, Gateway(config) as gateway:
        kubeconfig = cluster.kubeconfig
        if check:
            return await _check(gateway, str(kubeconfig))
        print(f"\nwirelet demo: {count} emulated devices, control plane at {cluster.server}")
        print(f"\n  export KUBECONFIG={kubeconfig}\n")
        print("  kubectl get nodes -o wide")
        print(f"  kubectl apply -f {EXAMPLES}/counter-pod.yaml")
        print("  kubectl logs -f counter")
        print("  kubectl exec counter -- uptime")
        print("  kubectl get --raw /api/v1/nodes/wirelet-demo-0/proxy/runningpods/")
        print("  kubectl describe pod counter")
        print(f"  kubectl apply -f {EXAMPLES}/job.yaml -f {EXAMPLES}/deployment.yaml")
        print("  kubectl delete pod counter")
        print(f"\n  devices: {device_ctl_hint(device_dir)}")
        print("\nCtrl-C to stop.\n", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def device_ctl_hint(device_dir: Path) -> str:
    """The emulator's ctl command with this interpreter (the venv's, which has `hil`), since a
    bare `python` may be another Python, or none at all."""
    return f"{sys.executable} -m hil.emulator ctl {device_dir} demo-0 unplug|replug|reboot"


async def _check(gateway: Gateway, kubeconfig: str) -> int:
    api = gateway.api
    assert api is not None
    deadline = asyncio.get_running_loop().time() + CHECK_TIMEOUT_S
    while True:
        try:
            await api.create("/api/v1/namespaces/default/pods", CHECK_POD)
            break
        except KubeApiError as exc:
            if exc.conflict:
                break
            # A fresh cluster has no "default" service account for a moment.
            if "service account" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
    phase = ""
    while asyncio.get_running_loop().time() < deadline:
        try:
            pod = await api.get("/api/v1/namespaces/default/pods/demo-check")
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            pod = {}
        phase = (pod.get("status") or {}).get("phase", "")
        if phase in ("Succeeded", "Failed"):
            break
        await asyncio.sleep(0.2)
    print(f"pod demo-check on {pod.get('spec', {}).get('nodeName')}: {phase or 'no phase'}")
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        "logs",
        "demo-check",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    sys.stdout.write(out.decode())
    ok = phase == "Succeeded" and proc.returncode == 0
    print("demo check: ok" if ok else "demo check: FAILED", flush=True)
    return 0 if ok else 1
