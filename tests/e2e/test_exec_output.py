"""`kubectl exec` output larger than one protocol frame, its limit and its timeout: the real
kubectl through the real API server to the gateway and emulated devices (PROTOCOL.md section 9,
streamed exec output)."""

from __future__ import annotations

import pytest

from .conftest import Wirelet
from .test_kubelet_api import run, running_pod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def seq_text(last: int) -> str:
    return "".join(f"{n}\n" for n in range(1, last + 1))


async def shell_on_first_device(wirelet: Wirelet, name: str = "shell") -> str:
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    await running_pod(wirelet, name, node)
    return name


async def test_kubectl_exec_output_of_many_frames_arrives_whole(wirelet: Wirelet) -> None:
    pod = await shell_on_first_device(wirelet)
    ns = wirelet.namespace
    expected = seq_text(10_000)  # 48 894 bytes: dozens of frames
    for spdy in (False, True):
        code, out, err = await run(wirelet, "exec", "-n", ns, pod, "--", "seq", "10000", spdy=spdy)
        assert code == 0, err
        assert out == expected, (len(out), len(expected))
        assert "wirelet:" not in err
    code, out, err = await run(wirelet, "exec", "-n", ns, pod, "--", "fail", "3", "no", "sensor")
    assert (code, out, err.strip().splitlines()[0]) == (3, "", "no sensor")


@pytest.mark.gateway_config(kubelet={"exec_output_limit_bytes": 10_000, "exec_timeout_s": 0.5})
async def test_kubectl_exec_limit_and_timeout_are_configured_and_explained(
    wirelet: Wirelet,
) -> None:
    pod = await shell_on_first_device(wirelet)
    ns = wirelet.namespace
    code, out, err = await run(wirelet, "exec", "-n", ns, pod, "--", "seq", "10000")
    assert code == 0, err
    assert out == seq_text(10_000)[:10_000]
    assert "output was cut at 10000 bytes (kubelet.exec_output_limit_bytes)" in err

    code, out, err = await run(wirelet, "exec", "-n", ns, pod, "--", "sleep", "30")
    assert code != 0
    assert "ran longer than 0.5 s (kubelet.exec_timeout_s)" in err, err
    assert "raise kubelet.exec_timeout_s" in err


@pytest.mark.device_profile(streamed_exec=False)
async def test_kubectl_exec_on_a_device_without_streamed_exec_says_it_was_cut(
    wirelet: Wirelet,
) -> None:
    pod = await shell_on_first_device(wirelet)
    ns = wirelet.namespace
    code, out, err = await run(wirelet, "exec", "-n", ns, pod, "--", "seq", "10000")
    assert code == 0, err
    assert out and seq_text(10_000).startswith(out) and len(out) < 4096  # one frame
    assert "output was cut by the device" in err
    code, out, err = await run(wirelet, "exec", "-n", ns, pod, "--", "echo", "short")
    assert (code, out) == (0, "short\n") and "wirelet:" not in err
