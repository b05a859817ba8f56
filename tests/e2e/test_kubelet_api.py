"""The kubelet API as users reach it: the API server's node proxy, and the real kubectl's exec,
attach, port-forward and cp, all through the real API server to the gateway's per-node ports."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from .conftest import WAIT, Wirelet, require_node_proxy_address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def run(wirelet: Wirelet, *args: str, spdy: bool = False) -> tuple[int, str, str]:
    """kubectl with the admin kubeconfig: (exit code, stdout, stderr). `spdy`: exec/attach
    over SPDY/3.1 (kubectl's fallback), which the API server passes on to the gateway."""
    env = {**os.environ, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"} if spdy else None
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={wirelet.cluster.kubeconfig}",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def raw(wirelet: Wirelet, node: str, path: str) -> Any:
    text = await wirelet.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy{path}")
    try:
        return json.loads(text)
    except ValueError:
        return text


async def running_pod(wirelet: Wirelet, name: str, node: str, interval_ms: str = "200") -> None:
    await wirelet.create_pod(name, "forever", [interval_ms], node=node, restart="Always")
    await wirelet.wait_container(name, lambda c: "running" in c["state"])


async def test_node_proxy_answers_for_exactly_the_node_asked(wirelet: Wirelet) -> None:
    require_node_proxy_address()
    first, second = (wirelet.node(d.profile.device_id) for d in wirelet.fleet.devices[:2])
    for node in (first, second):
        await wirelet.wait_node(node)
    await running_pod(wirelet, "on-first", first)
    await running_pod(wirelet, "on-second", second)

    for node, mine, other in ((first, "on-first", "on-second"), (second, "on-second", "on-first")):
        pods = await raw(wirelet, node, "/pods")
        names = {p["metadata"]["name"] for p in pods["items"]}
        assert mine in names and other not in names
        for path in ("/runningpods/", "/runningpods"):
            running = await raw(wirelet, node, path)
            assert [p["metadata"]["name"] for p in running["items"]] == [mine]
            assert running["items"][0]["spec"]["containers"] == [
                {"name": "main", "image": "forever"}
            ]
        summary = await raw(wirelet, node, "/stats/summary")
        assert summary["node"]["nodeName"] == node
        assert [p["podRef"]["name"] for p in summary["pods"]] == [mine]
        metrics = await raw(wirelet, node, "/metrics/resource")
        assert f'pod="{mine}"' in metrics and f'pod="{other}"' not in metrics
        assert await raw(wirelet, node, "/healthz") == "ok"
        assert wirelet.gateway.server is not None
        configz = (await raw(wirelet, node, "/configz"))["kubeletconfig"]
        assert configz["port"] == wirelet.gateway.server.node_port(node)
        assert configz["authorization"]["mode"] == "Webhook"


async def test_long_request_lines_reach_the_gateway_through_the_api_server(
    wirelet: Wirelet,
) -> None:
    """The kubelet reads request heads up to 1 MiB and the API server passes long URLs on: a
    query of 20 KB, and `kubectl exec` with many arguments (one `command=` parameter each)."""
    require_node_proxy_address()
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    pods = await raw(wirelet, node, "/pods?pad=" + "x" * 20_000)
    assert pods["kind"] == "PodList"

    # 1500 arguments: a request line of about 20 KB reaches the gateway (aiohttp's default
    # would have answered 400), which finds the command too long for the device's frames.
    await running_pod(wirelet, "many-args", node)
    args = [f"arg{n:04d}" for n in range(1500)]
    code, _, err = await run(
        wirelet, "exec", "-n", wirelet.namespace, "many-args", "--", "echo", *args
    )
    assert code == 1
    assert "cannot run 'echo' on the device of node" in err and "cannot send Exec" in err, err


async def test_kubectl_exec_runs_on_the_device_and_follows_its_exit_code(
    wirelet: Wirelet,
) -> None:
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    await running_pod(wirelet, "shell", node)
    ns = wirelet.namespace

    code, out, err = await run(wirelet, "exec", "-n", ns, "shell", "--", "echo", "hi", "there")
    assert (code, out) == (0, "hi there\n"), err

    code, out, err = await run(wirelet, "exec", "-n", ns, "shell", "--", "no-such-command")
    assert code == 127
    assert "no-such-command: not found" in err

    # The emulator's `uptime` names its boot: the command ran on the device itself.
    code, out, _ = await run(wirelet, "exec", "-n", ns, "shell", "--", "uptime")
    assert code == 0 and out.startswith("boot ")

    # The same over SPDY/3.1, as API servers before 1.36 speak to kubelets.
    code, out, err = await run(wirelet, "exec", "-n", ns, "shell", "--", "echo", "spdy", spdy=True)
    assert (code, out) == (0, "spdy\n"), err
    code, out, err = await run(wirelet, "exec", "-n", ns, "shell", "--", "nope", spdy=True)
    assert code == 127 and "nope: not found" in err


async def test_kubectl_exec_what_a_device_cannot_do_is_a_clear_error(wirelet: Wirelet) -> None:
    node = wirelet.node(wirelet.fleet.devices[1].profile.device_id)
    await wirelet.wait_node(node)
    await running_pod(wirelet, "plain", node)
    ns = wirelet.namespace

    code, _, err = await run(wirelet, "exec", "-i", "-n", ns, "plain", "--", "cat")
    assert code != 0 and "takes no input" in err

    # A TTY is only requested by kubectl when its own stdin is a terminal: give it one.
    code, output = await _kubectl_on_a_terminal(
        wirelet, "exec", "-it", "-n", ns, "plain", "--", "sh"
    )
    assert code != 0 and "cannot give one" in output

    code, _, err = await run(wirelet, "cp", f"{ns}/plain:/etc/hosts", "/tmp/wirelet-cp-target")
    assert code != 0 and "kubectl cp is not possible" in err

    code, _, err = await run(wirelet, "port-forward", "-n", ns, "pod/plain", "0:80")
    assert code != 0 and "port-forward is not possible" in err


async def _kubectl_on_a_terminal(wirelet: Wirelet, *args: str) -> tuple[int, str]:
    controller, terminal = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={wirelet.cluster.kubeconfig}",
            *args,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
    finally:
        os.close(terminal)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []

    def drain() -> None:
        try:
            while data := os.read(controller, 65536):
                chunks.append(data)
        except OSError:  # EIO: the terminal's last holder exited
            pass

    reading = loop.run_in_executor(None, drain)
    try:
        code = await asyncio.wait_for(proc.wait(), WAIT)
        await asyncio.wait_for(reading, WAIT)
    finally:
        os.close(controller)
    return code, b"".join(chunks).decode(errors="replace")


async def test_kubectl_attach_streams_the_running_task(wirelet: Wirelet) -> None:
    node = wirelet.node(wirelet.fleet.devices[2].profile.device_id)
    await wirelet.wait_node(node)
    # `counter 100 100`: lines "1".."100" every 100 ms, then the task exits.
    await wirelet.create_pod("count", "counter", ["100", "100"], node=node)
    await wirelet.wait_container("count", lambda c: "running" in c["state"])
    code, out, err = await run(wirelet, "attach", "-n", wirelet.namespace, "count")
    lines = out.split()
    assert code == 0, err
    assert lines, "attach showed nothing"
    assert lines[-1] == "100", "attach ends when the task does, with all its output"
    numbers = [int(x) for x in lines]
    assert numbers == list(range(numbers[0], 101)), "no gap, no repeat"


async def test_kubectl_attach_over_spdy(wirelet: Wirelet) -> None:
    node = wirelet.node(wirelet.fleet.devices[1].profile.device_id)
    await wirelet.wait_node(node)
    await wirelet.create_pod("count2", "counter", ["60", "100"], node=node)
    await wirelet.wait_container("count2", lambda c: "running" in c["state"])
    code, out, err = await run(wirelet, "attach", "-n", wirelet.namespace, "count2", spdy=True)
    assert code == 0, err
    assert out.split()[-1] == "60"


async def test_node_and_pod_events_and_describe_node(wirelet: Wirelet) -> None:
    device = wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    await wirelet.wait_node(node)
    await running_pod(wirelet, "described", node)

    async def node_reasons() -> set[str] | None:
        listing = await wirelet.api.get(
            "/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.name={node}"
        )
        reasons = {e["reason"] for e in listing.get("items") or []}
        return reasons if {"Starting", "RegisteredNode", "NodeReady"} <= reasons else None

    await wirelet.wait_for(f"node events of {node}", node_reasons)

    async def pod_events() -> dict[str, str] | None:
        events = {e["reason"]: e["message"] for e in await wirelet.events_for("described")}
        return events if {"Pulled", "Created", "Started"} <= set(events) else None

    events = await wirelet.wait_for("pod events", pod_events)
    assert 'Container image "forever" already present on machine' in events["Pulled"]

    described = await wirelet.kubectl("describe", "node", node)
    assert "Non-terminated Pods:          (1 in total)" in described
    assert f"{wirelet.namespace}  " in described and "described" in described
    assert "Allocated resources:" in described


async def test_a_nodes_healthz_follows_its_device(wirelet: Wirelet) -> None:
    require_node_proxy_address()
    device = wirelet.fleet.devices[2]
    node, other = (
        wirelet.node(device.profile.device_id),
        wirelet.node(wirelet.fleet.devices[0].profile.device_id),
    )
    for name in (node, other):
        await wirelet.wait_node(name)
    assert await raw(wirelet, node, "/healthz") == "ok"
    device.unplug()
    await wirelet.wait_node(node, "False")
    code, _, err = await run(wirelet, "get", "--raw", f"/api/v1/nodes/{node}/proxy/healthz")
    assert code != 0 and "(ServiceUnavailable)" in err, err  # kubectl hides the 503 body
    assert await raw(wirelet, other, "/healthz") == "ok"  # only that node
    device.plug()
    await wirelet.wait_node(node, "True")
    assert await raw(wirelet, node, "/healthz") == "ok"


async def test_the_devices_firmware_log_is_its_nodes_logs(wirelet: Wirelet) -> None:
    """DEVICE_LOG lines, as a kubelet host's /var/log files: `kubectl get --raw
    /api/v1/nodes/NODE/proxy/logs/` lists the node's firmware.log, which holds them."""
    require_node_proxy_address()
    device, other = wirelet.fleet.devices[1], wirelet.fleet.devices[0]
    node = wirelet.node(device.profile.device_id)
    other_node = wirelet.node(other.profile.device_id)
    for name in (node, other_node):
        await wirelet.wait_node(name)
    device.log(2, "heap low: 1.2 kB left")
    device.log(3, "sensor 2 does not answer")
    deadline = asyncio.get_running_loop().time() + WAIT
    text = ""
    while asyncio.get_running_loop().time() < deadline:
        if "firmware.log" in await raw(wirelet, node, "/logs/"):
            text = await raw(wirelet, node, "/logs/firmware.log")
            if "sensor 2" in text:
                break
        await asyncio.sleep(0.2)
    lines = text.splitlines()
    assert lines[-2].split(" ", 1)[1].startswith("WARNING [uptime ")
    assert lines[-2].endswith(" heap low: 1.2 kB left")
    assert lines[-1].split(" ", 1)[1].startswith("ERROR [uptime ")
    assert lines[-1].endswith(" sensor 2 does not answer")
    listing = await raw(wirelet, other_node, "/logs/")
    if "firmware.log" in listing:
        assert "sensor 2" not in await raw(wirelet, other_node, "/logs/firmware.log")
