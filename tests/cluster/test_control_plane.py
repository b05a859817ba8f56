"""The local control plane is real: storage, scheduling, CSR signing and leader election work."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import ssl
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from hil.cluster.build import KUBERNETES_VERSION
from hil.cluster.local import LocalCluster
from hil.cluster.pki import new_ec_key

pytestmark = pytest.mark.integration

KUBECTL = "/usr/bin/kubectl"


async def test_readyz_and_version(cluster: LocalCluster) -> None:
    assert cluster.readyz()
    assert cluster.version() == KUBERNETES_VERSION
    assert cluster.server.startswith("https://127.0.0.1:")
    assert cluster.ca_cert.is_file()
    assert cluster.kubeconfig.is_file()


async def test_configmap_round_trip_kubernetes_asyncio(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="greeting"), data={"hello": "wirelet", "n": "1"}
    )
    await core.create_namespaced_config_map(namespace, body)
    got = await core.read_namespaced_config_map("greeting", namespace)
    assert got.data == {"hello": "wirelet", "n": "1"}


def _kubectl(cluster: LocalCluster, *args: str) -> str:
    result = subprocess.run(
        [KUBECTL, f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_namespace_and_configmap_round_trip_kubectl(cluster: LocalCluster) -> None:
    ns = f"k-{uuid.uuid4().hex[:10]}"
    _kubectl(cluster, "create", "namespace", ns)
    _kubectl(cluster, "-n", ns, "create", "configmap", "cm", "--from-literal=board=rp2040")
    got = json.loads(_kubectl(cluster, "-n", ns, "get", "configmap", "cm", "-o", "json"))
    assert got["data"] == {"board": "rp2040"}
    _kubectl(cluster, "delete", "namespace", ns, "--wait=false")


async def _create_ready_node(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name})
        )
    )
    now = datetime.datetime.now(datetime.UTC)
    status = {
        "status": {
            "capacity": {"cpu": "1", "memory": "64Mi", "pods": "10"},
            "allocatable": {"cpu": "1", "memory": "64Mi", "pods": "10"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "test node",
                    "lastHeartbeatTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        }
    }
    await core.patch_node_status(name, status)
    await client.CoordinationV1Api(api).create_namespaced_lease(
        "kube-node-lease",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1LeaseSpec(
                holder_identity=name, lease_duration_seconds=40, renew_time=now
            ),
        ),
    )


@pytest.mark.timeout(180)
async def test_scheduler_binds_pod_to_ready_node(api: client.ApiClient, namespace: str) -> None:
    node = f"node-{uuid.uuid4().hex[:8]}"
    await _create_ready_node(api, node)
    core = client.CoreV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="blink"),
        spec=client.V1PodSpec(
            # Other tests' nodes never heartbeat; pin to ours so only this node can be chosen.
            node_selector={"kubernetes.io/hostname": node},
            containers=[client.V1Container(name="blink", image="wirelet.example/blink:1")],
        ),
    )
    await core.create_namespaced_pod(namespace, pod)
    bound_to = None
    for _ in range(240):
        got = await core.read_namespaced_pod("blink", namespace)
        bound_to = got.spec.node_name
        if bound_to:
            break
        await asyncio.sleep(0.5)
    await core.delete_node(node)
    assert bound_to == node


def _csr_pem(cn: str) -> bytes:
    key = new_ec_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.mark.timeout(120)
async def test_controller_manager_signs_approved_csr(
    api: client.ApiClient, cluster: LocalCluster
) -> None:
    certs = client.CertificatesV1Api(api)
    name = f"csr-{uuid.uuid4().hex[:8]}"
    await certs.create_certificate_signing_request(
        client.V1CertificateSigningRequest(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(_csr_pem("wirelet-csr-user")).decode(),
                signer_name="kubernetes.io/kube-apiserver-client",
                usages=["client auth"],
                expiration_seconds=600,
            ),
        )
    )
    csr = await certs.read_certificate_signing_request(name)
    csr.status.conditions = [
        client.V1CertificateSigningRequestCondition(
            type="Approved", status="True", reason="WireletTest", message="approved by test"
        )
    ]
    await certs.replace_certificate_signing_request_approval(name, csr)
    issued = None
    for _ in range(240):
        csr = await certs.read_certificate_signing_request(name)
        if csr.status.certificate:
            issued = x509.load_pem_x509_certificate(base64.b64decode(csr.status.certificate))
            break
        await asyncio.sleep(0.25)
    await certs.delete_certificate_signing_request(name)
    assert issued is not None, "controller-manager did not sign the approved CSR"
    ca = x509.load_pem_x509_certificate(cluster.ca_cert.read_bytes())
    issued.verify_directly_issued_by(ca)
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "wirelet-csr-user"
    )


@pytest.mark.timeout(120)
async def test_controller_manager_and_scheduler_hold_leader_leases(api: client.ApiClient) -> None:
    coordination = client.CoordinationV1Api(api)
    holders: dict[str, str] = {}
    for _ in range(240):
        for lease_name in ("kube-controller-manager", "kube-scheduler"):
            try:
                lease = await coordination.read_namespaced_lease(lease_name, "kube-system")
            except ApiException as exc:
                if exc.status != 404:
                    raise
                continue
            if lease.spec.holder_identity:
                holders[lease_name] = lease.spec.holder_identity
        if len(holders) == 2:
            break
        await asyncio.sleep(0.25)
    assert set(holders) == {"kube-controller-manager", "kube-scheduler"}


async def test_leader_leases_outlast_a_loaded_api_server(api: client.ApiClient) -> None:
    # Each component runs once: a lease lost to a slow renewal would only end it (the
    # controller-manager exited mid-benchmark with the default 15 s lease and 10 s deadline).
    coordination = client.CoordinationV1Api(api)
    for lease_name in ("kube-controller-manager", "kube-scheduler"):
        lease = await coordination.read_namespaced_lease(lease_name, "kube-system")
        assert lease.spec.lease_duration_seconds == 120, lease_name


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_scheduler_budget_is_configurable() -> None:
    """A cluster started with scheduler_qps runs its scheduler with that client budget (its
    /configz, the configuration in effect); the default cluster keeps the scheduler's own."""
    with LocalCluster(scheduler_qps=500) as cluster:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the scheduler's self-signed serving certificate
        context.load_cert_chain(cluster.admin.cert, cluster.admin.key)
        url = f"https://127.0.0.1:{cluster.scheduler_port}/configz"
        with urllib.request.urlopen(url, timeout=10, context=context) as answer:
            configz = json.loads(answer.read())
    connection = configz["componentconfig"]["clientConnection"]
    assert connection["qps"] == 500
    assert connection["burst"] == 1000


async def test_client_without_permissions_is_forbidden(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    kubeconfig = cluster.client_kubeconfig("nobody", [], tmp_path / "nobody.kubeconfig")
    conf = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
    async with client.ApiClient(conf) as api:
        with pytest.raises(ApiException) as err:
            await client.CoreV1Api(api).list_namespace()
    assert err.value.status == 403


def test_serving_cert_chains_to_cluster_ca(cluster: LocalCluster, tmp_path: Path) -> None:
    cert_path, key_path = cluster.sign_serving_cert(["127.0.0.1", "localhost"], tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cluster.ca_cert.read_bytes()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert key_path.stat().st_mode & 0o077 == 0
