"""An SSH host as a node, end to end: the real control plane, a real sshd on loopback, and one
gateway serving the host beside an emulated serial device. Pods run as commands on the host;
kubectl sees a node like any other."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.processes import write_toml
from gateway.kube.api import KubeApi, load_configuration
from hil.cluster.local import LocalCluster
from tests.e2e.conftest import (
    Wirelet,
    _delete_nodes,
    _wait_default_sa,
    gateway_settings,
    running_gateway,
)
from tests.e2e.test_restart import GatewayProcess
from tests.ssh.helpers import FAST_SSH
from tests.ssh.sshd import Sshd, keygen, make_sshd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def ssh_container(
    command: list[str],
    args: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    working_dir: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "host", "command": command}
    if args:
        container["args"] = args
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if working_dir:
        container["workingDir"] = working_dir
    return container


async def create_ssh_pod(
    wirelet: Wirelet,
    name: str,
    node: str,
    container: dict[str, Any],
    *,
    restart: str = "Never",
    grace: int = 5,
) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": grace,
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [container],
        },
    }
    return await wirelet.api.create(f"/api/v1/namespaces/{wirelet.namespace}/pods", body)  # type: ignore[no-any-return]


def pgrep(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return found.stdout.split()


class SshEnv:
    def __init__(self, wirelet: Wirelet, sshd: Sshd, node: str) -> None:
        self.wirelet = wirelet
        self.sshd = sshd
        self.node = node


def host_entry(sshd: Sshd, host_id: str, **extra: Any) -> dict[str, Any]:
    return {"ssh": {**FAST_SSH, "hosts": [sshd.host_settings(id=host_id, **extra)]}}


@pytest.fixture
async def ssh_env(cluster: LocalCluster, tmp_path: Path) -> AsyncIterator[SshEnv]:
    sshd = make_sshd(tmp_path / "sshd")
    sshd.start()
    host_id = f"ssh-{uuid.uuid4().hex[:6]}"
    node = f"wirelet-{host_id}"
    try:
        async with running_gateway(
            cluster,
            tmp_path,
            devices=1,
            prefix="ssh",
            config_overrides=host_entry(sshd, host_id, capacity={"pods": "7"}),
        ) as wirelet:
            try:
                yield SshEnv(wirelet, sshd, node)
            finally:
                await _delete_nodes(wirelet.api, [node])
    finally:
        sshd.stop()


async def test_host_is_a_node_and_a_pod_runs_to_completion(ssh_env: SshEnv) -> None:
    wirelet, node = ssh_env.wirelet, ssh_env.node
    await wirelet.wait_node(node)
    obj = await wirelet.api.get(f"/api/v1/nodes/{node}")
    labels = obj["metadata"]["labels"]
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
    assert labels["wirelet.io/transport"] == "ssh"
    capacity = obj["status"]["capacity"]
    assert capacity["pods"] == "7"  # from [[ssh.hosts]] capacity
    assert capacity["cpu"] == str(len(__import__("os").sched_getaffinity(0)))  # probed: nproc
    assert obj["status"]["nodeInfo"]["operatingSystem"] == "linux"
    # The serial device beside it is served by the same gateway.
    device = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(device)

    tricky = ["a b", "it's", '"q"', "$(touch /tmp/wirelet-pwned)", "; echo pwned", "*"]
    # No wire-protocol limits on a host: a 1000-byte argument, more than 32 arguments.
    tricky += ["x" * 1000, *(f"arg{i}" for i in range(40))]
    script = 'printf "<%s>\\n" "$@"; echo "$GREETING"; pwd; echo oops >&2; exit 4'
    await create_ssh_pod(
        wirelet,
        "done",
        node,
        ssh_container(
            ["sh", "-c", script, "sh"],
            tricky,
            env={"GREETING": "hello $(id) world"},
            working_dir="/tmp",
        ),
    )
    pod = await wirelet.wait_pod_phase("done", "Failed", "Succeeded")
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], state["exitCode"], state["reason"]) == ("Failed", 4, "Error")
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "done")
    expected = "".join(f"<{a}>\n" for a in tricky) + "hello $(id) world\n/tmp\noops\n"
    assert sorted(logs.splitlines()) == sorted(expected.splitlines())
    assert not exists(Path("/tmp/wirelet-pwned"))
    # The pod is gone: so are its state files on the host.
    await wirelet.kubectl("delete", "pod", "-n", wirelet.namespace, "done", "--wait=true")
    await wirelet.wait_for(
        "state dir removed",
        lambda: _true(not any(ssh_env.sshd.home_state.glob(pod["metadata"]["uid"]))),
    )


def ssh_toml(ssh: dict[str, Any]) -> str:
    """The [ssh] table with its [[ssh.hosts]] (JSON strings and numbers are TOML's too)."""
    lines = ["", "[ssh]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in ssh.items() if k != "hosts"]
    for host in ssh["hosts"]:
        lines += ["", "[[ssh.hosts]]", *(f"{k} = {json.dumps(v)}" for k, v in host.items())]
    return "\n".join(lines) + "\n"


def exists(path: Path) -> bool:
    return path.exists()


async def _true(value: bool) -> bool:
    return value


async def test_logs_follow_and_restart_policy(ssh_env: SshEnv) -> None:
    wirelet, node = ssh_env.wirelet, ssh_env.node
    await wirelet.wait_node(node)
    count = 30
    loop = f'for i in $(seq 1 {count}); do echo "tick $i"; sleep 0.05; done'
    await create_ssh_pod(wirelet, "ticker", node, ssh_container(["sh", "-c", loop]))
    await wirelet.wait_container(
        "ticker", lambda c: "running" in c["state"] or "terminated" in c["state"]
    )
    followed = await wirelet.kubectl("logs", "-f", "-n", wirelet.namespace, "ticker")
    assert followed.splitlines() == [f"tick {i}" for i in range(1, count + 1)]

    # OnFailure: the failing command runs again (with the kubelet's back-off), counted.
    await create_ssh_pod(
        wirelet,
        "flaky",
        node,
        ssh_container(["sh", "-c", "echo try; exit 1"]),
        restart="OnFailure",
    )
    pod = await wirelet.wait_container("flaky", lambda c: c.get("restartCount", 0) >= 2)
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1


async def test_graceful_and_force_delete_leave_nothing_running(ssh_env: SshEnv) -> None:
    wirelet, node = ssh_env.wirelet, ssh_env.node
    await wirelet.wait_node(node)
    graceful = 'trap "echo bye; exit 0" TERM; echo up; while :; do sleep 0.05; done'
    stubborn = 'trap "" TERM; sleep 1000 & echo up; while :; do sleep 0.05; done'
    await create_ssh_pod(
        wirelet, "polite", node, ssh_container(["sh", "-c", graceful, "polite-e2e-5c"])
    )
    await create_ssh_pod(
        wirelet, "stubborn", node, ssh_container(["sh", "-c", stubborn, "stubborn-e2e-5c"]), grace=1
    )
    await create_ssh_pod(
        wirelet, "forced", node, ssh_container(["sh", "-c", stubborn, "forced-e2e-5c"])
    )
    for name in ("polite", "stubborn", "forced"):
        await wirelet.wait_container(name, lambda c: "running" in c["state"])
    assert pgrep("polite-e2e-5c") and pgrep("stubborn-e2e-5c") and pgrep("forced-e2e-5c")
    ns = wirelet.namespace
    # kubectl exec: a new command over a new channel to the host.
    out = await wirelet.kubectl("exec", "-n", ns, "polite", "--", "sh", "-c", "echo $((6*7))")
    assert out == "42\n"
    await wirelet.kubectl("delete", "pod", "-n", ns, "polite", "--wait=true")
    await wirelet.kubectl("delete", "pod", "-n", ns, "stubborn", "--wait=true")
    await wirelet.kubectl("delete", "pod", "-n", ns, "forced", "--force", "--grace-period=0")
    assert pgrep("polite-e2e-5c") == [] and pgrep("stubborn-e2e-5c") == []
    await wirelet.wait_for("forced pod's processes gone", lambda: _true(not pgrep("forced-e2e-5c")))
    await wirelet.wait_for(
        "state dirs removed",
        lambda: _true(not any(ssh_env.sshd.home_state.iterdir())),
    )


async def test_sshd_killed_node_not_ready_then_ready_and_pod_adopted(ssh_env: SshEnv) -> None:
    wirelet, node, sshd = ssh_env.wirelet, ssh_env.node, ssh_env.sshd
    await wirelet.wait_node(node)
    count = 100
    loop = f'for i in $(seq 1 {count}); do echo "n $i"; sleep 0.05; done'
    await create_ssh_pod(wirelet, "survivor", node, ssh_container(["sh", "-c", loop]))
    await wirelet.wait_container("survivor", lambda c: "running" in c["state"])
    sshd.kill()
    await wirelet.wait_node(node, "False")
    obj = await wirelet.api.get(f"/api/v1/nodes/{node}")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert "ssh://" in ready["message"], ready
    # The serial device's node is untouched.
    assert (
        await wirelet.node_ready(wirelet.node(wirelet.fleet.devices[0].profile.device_id)) == "True"
    )
    sshd.start()
    await wirelet.wait_node(node)
    pod = await wirelet.wait_pod_phase("survivor", "Succeeded", "Failed")
    status = pod["status"]["containerStatuses"][0]
    assert (pod["status"]["phase"], status["restartCount"]) == ("Succeeded", 0)
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "survivor")
    assert logs.splitlines() == [f"n {i}" for i in range(1, count + 1)]


async def test_wrong_host_key_is_refused_with_an_event(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    sshd = make_sshd(tmp_path / "sshd")
    sshd.start()
    other = tmp_path / "other"
    keygen(other)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    bad = tmp_path / "bad_known_hosts"
    bad.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    host_id = f"ssh-{uuid.uuid4().hex[:6]}"
    try:
        async with running_gateway(
            cluster,
            tmp_path,
            devices=0,
            prefix="sshkey",
            config_overrides=host_entry(sshd, host_id, known_hosts=str(bad)),
        ) as wirelet:

            async def refused() -> list[dict[str, Any]]:
                listing = await wirelet.api.get(
                    "/api/v1/events", fieldSelector="reason=SshHostKeyNotVerified"
                )
                return [
                    e for e in listing.get("items") or [] if str(sshd.port) in e.get("message", "")
                ]

            events = await wirelet.wait_for("host key event", refused)
            assert "host key not accepted" in events[0]["message"]
            assert events[0]["involvedObject"]["name"] == socket.gethostname()
            assert await wirelet.node_ready(f"wirelet-{host_id}") == "Missing"
    finally:
        sshd.stop()


@dataclass
class External:
    wirelet: Wirelet
    process: GatewayProcess
    sshd: Sshd
    node: str
    log: Path


@pytest.fixture
async def external(cluster: LocalCluster, tmp_path: Path) -> AsyncIterator[External]:
    """A gateway as its own process (so it can be SIGKILLed) serving one SSH host."""
    sshd = make_sshd(tmp_path / "sshd")
    sshd.start()
    host_id = f"ssh-{uuid.uuid4().hex[:6]}"
    node = f"wirelet-{host_id}"
    device_dir = tmp_path / "devices"
    device_dir.mkdir()
    config = tmp_path / "wirelet.toml"
    write_toml(config, gateway_settings(cluster, device_dir, tmp_path))
    with config.open("a", encoding="utf-8") as toml:
        toml.write(ssh_toml(host_entry(sshd, host_id)["ssh"]))
    namespace = f"sshkill-{uuid.uuid4().hex[:6]}"
    async with KubeApi(await load_configuration(str(cluster.kubeconfig))) as api:
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        await _wait_default_sa(api, namespace)
        log = tmp_path / "gateway.log"
        process = GatewayProcess(config, log)
        wirelet = Wirelet(cluster, None, None, api, namespace, device_dir, None)  # type: ignore[arg-type]
        try:
            await process.start()
            await wirelet.wait_node(node)
            yield External(wirelet, process, sshd, node, log)
        finally:
            await process.stop()
            await _delete_nodes(api, [node])
            await api.delete(f"/api/v1/namespaces/{namespace}")
            sshd.stop()


def touch(path: Path) -> None:
    path.touch()


def read_text(path: Path) -> str:
    return path.read_text()


async def test_gateway_sigkill_mid_pod_every_line_exactly_once(external: External) -> None:
    wirelet, process, node = external.wirelet, external.process, external.node

    def adoptions(at_least: int) -> Callable[[], Awaitable[bool]]:
        return lambda: _true(read_text(external.log).count("adopted running task") >= at_least)

    # Prints until told to stop, so it outlives every restart however slow the machine is.
    stop = external.sshd.root / "stop-printing"
    printed = external.sshd.root / "printed"  # how many lines it printed, in the end
    loop = (
        f'i=0; while [ ! -e {stop} ]; do i=$((i+1)); echo "line $i"; sleep 0.01; done; '
        f"echo $i > {printed}"
    )
    await create_ssh_pod(wirelet, "steady", node, ssh_container(["sh", "-c", loop]))
    await wirelet.wait_container("steady", lambda c: "running" in c["state"])
    for served in range(1, 4):  # kill it a few times while the command prints
        await process.kill()
        await asyncio.sleep(0.3)  # the command keeps printing while no gateway listens
        await process.start()
        # Kill again only once this process has adopted the command.
        await wirelet.wait_for("the restarted gateway adopted the command", adoptions(served))
    touch(stop)
    pod = await wirelet.wait_pod_phase("steady", "Succeeded", "Failed")
    status = pod["status"]["containerStatuses"][0]
    assert (pod["status"]["phase"], status["restartCount"]) == ("Succeeded", 0)
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "steady")
    count = int(read_text(printed))
    assert count > 100
    assert logs.splitlines() == [f"line {i}" for i in range(1, count + 1)]


async def test_command_of_a_pod_deleted_while_the_gateway_was_down_is_stopped(
    external: External,
) -> None:
    wirelet, process, node = external.wirelet, external.process, external.node
    script = "echo up; while :; do sleep 0.05; done"
    await create_ssh_pod(
        wirelet, "orphan", node, ssh_container(["sh", "-c", script, "orphan-e2e-7d"])
    )
    await wirelet.wait_container("orphan", lambda c: "running" in c["state"])
    assert pgrep("orphan-e2e-7d")
    await process.kill()
    await wirelet.kubectl(
        "delete", "pod", "-n", wirelet.namespace, "orphan", "--force", "--grace-period=0"
    )
    await process.start()
    await wirelet.wait_for("orphan stopped", lambda: _true(not pgrep("orphan-e2e-7d")))
    await wirelet.wait_for(
        "its state removed", lambda: _true(not any(external.sshd.home_state.iterdir()))
    )
