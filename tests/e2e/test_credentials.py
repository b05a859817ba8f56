"""The gateway's credentials as a user gets them: `wirelet bootstrap` and a human's
`kubectl certificate approve|deny`, deploy/rbac.yaml's least privilege, and the serving
certificate from a kubelet-serving CSR, rotated while the gateway runs."""

from __future__ import annotations

import asyncio
import datetime
import re
import socket
import ssl
import sys
from pathlib import Path

import pytest
from cryptography import x509

from gateway.config import KubeletApiConfig
from gateway.kube.api import KubeApi
from gateway.kubelet_serving import serving_context
from hil.cluster.local import LocalCluster

from .conftest import REPO, WAIT, Wirelet, _admin_configuration, gateway_kubeconfig

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def bootstrap_with_a_human(
    cluster: LocalCluster, out: Path, name: str, verdict: str
) -> tuple[int, str]:
    """Run `wirelet bootstrap` and answer its CSR with `kubectl certificate <verdict>`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "bootstrap",
        f"--kubeconfig={cluster.kubeconfig}",
        f"--name={name}",
        f"--out={out}",
        "--timeout=60",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    printed = ""
    async with asyncio.timeout(WAIT):
        match = None
        while match is None:
            line = await proc.stdout.readline()
            assert line, f"bootstrap ended without asking for approval: {printed}"
            printed += line.decode()
            match = re.search(r"kubectl certificate approve (\S+)", printed)
        code, answer = await kubectl(cluster.kubeconfig, "certificate", verdict, match[1])
        assert code == 0, answer
        rest, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, printed + rest.decode()


async def test_bootstrap_waits_for_a_human_approval_and_gives_least_privilege(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    await asyncio.to_thread(gateway_kubeconfig, cluster)  # deploy/rbac.yaml applied
    code, output = await bootstrap_with_a_human(cluster, tmp_path, "approved-host", "approve")
    assert code == 0, output
    kubeconfig = tmp_path / "kubeconfig"
    assert (tmp_path / "gateway.key").stat().st_mode & 0o777 == 0o600
    assert "client-key-data" not in kubeconfig.read_text()  # names the key file, no copy

    code, whoami = await kubectl(kubeconfig, "auth", "whoami")
    assert code == 0, whoami
    assert "wirelet:gateway:approved-host" in whoami and "wirelet:gateways" in whoami
    may = {
        ("patch", "nodes/status"): "yes",
        ("create", "nodes"): "yes",
        ("delete", "pods"): "yes",
        ("update", "pods"): "no",
        ("create", "tokenreviews.authentication.k8s.io"): "yes",
        ("create", "pods"): "no",
        ("delete", "namespaces"): "no",
        ("list", "secrets"): "no",
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"): "no",
    }
    for (verb, resource), expected in may.items():
        _, answer = await kubectl(kubeconfig, "auth", "can-i", verb, resource, "-A")
        assert answer.strip() == expected, (verb, resource, answer)
    # Subresources: `can-i VERB pods/status` would ask about a pod named "status".
    status_writes = {"update": "yes", "patch": "yes", "create": "no"}  # PUT: status_write.py
    for verb, expected in status_writes.items():
        _, answer = await kubectl(
            kubeconfig, "auth", "can-i", verb, "pods", "--subresource=status", "-A"
        )
        assert answer.strip() == expected, (verb, "pods/status", answer)


async def test_bootstrap_reports_a_denied_request(cluster: LocalCluster, tmp_path: Path) -> None:
    code, output = await bootstrap_with_a_human(cluster, tmp_path, "denied-host", "deny")
    assert code == 1
    assert "was denied" in output
    assert not (tmp_path / "kubeconfig").exists()


def served_certificate(host: str, port: int, ca: Path) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the SAN is checked by the API server in the tests below
    with (
        socket.create_connection((host, port), timeout=WAIT) as sock,
        context.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def test_serving_certificate_comes_from_a_csr_and_rotates_live(wirelet: Wirelet) -> None:
    gateway = wirelet.gateway
    serving_cert = gateway.parts.serving_cert
    assert serving_cert is not None
    node = wirelet.node(wirelet.fleet.devices[0].profile.device_id)
    await wirelet.wait_node(node)
    port = gateway.server.node_port(node)
    assert port is not None
    first = await asyncio.to_thread(
        served_certificate, gateway.node_ip, port, wirelet.cluster.ca_cert
    )
    subject = first.subject.rfc4514_string()
    assert "CN=system:node:" in subject and "O=system:nodes" in subject

    await wirelet.create_pod("rotating", "forever", ["200"], node=node, restart="Always")
    await wirelet.wait_container("rotating", lambda c: "running" in c["state"])
    await serving_cert.obtain(timeout_s=WAIT)  # what the renewal timer does
    second = await asyncio.to_thread(
        served_certificate, gateway.node_ip, port, wirelet.cluster.ca_cert
    )
    assert second.serial_number != first.serial_number
    # The API server (--kubelet-certificate-authority) accepts the new one, no restart.
    logs = await wirelet.kubectl("logs", "-n", wirelet.namespace, "rotating", "--tail=1")
    assert logs.startswith("tick ")


async def test_a_restart_serves_the_serving_certificate_of_the_last_run_without_a_new_csr(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """As the kubelet reuses its current serving pair: with CSRs approved by hand, a restart
    would otherwise serve the self-signed certificate (refused by the API server) until
    someone approved again."""
    cfg = KubeletApiConfig(server_tls_bootstrap=True, serving_cert_approve=True)
    private, serving = tmp_path / "private", tmp_path / "private" / "serving"
    private.mkdir()
    async with KubeApi(await _admin_configuration(cluster)) as api:

        async def csrs() -> int:
            return len((await api.get(CSRS))["items"])

        _, first = await serving_context(cfg, api, private, serving, "127.0.0.1")
        assert first is not None and first.current is not None
        asked = await csrs()
        # The next start, same state: served at once, nothing asked of the cluster.
        _, again = await serving_context(cfg, api, private, serving, "127.0.0.1")
        assert again is not None and again.current is not None
        assert again.current.serial_number == first.current.serial_number
        assert await csrs() == asked
        assert (serving / "serving.key").stat().st_mode & 0o077 == 0
        # A host whose address changed asks anew; so does one whose pair has expired.
        _, moved = await serving_context(cfg, api, private, serving, "127.0.0.2")
        assert moved is not None and moved.current is not None
        assert moved.current.serial_number != first.current.serial_number
        assert await csrs() == asked + 1
        expired = moved.current.not_valid_after_utc + datetime.timedelta(seconds=1)
        assert moved.load_saved(now=expired) is None
