"""LocalCluster: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from hil.cluster import process
from hil.cluster.build import Binaries, require_built
from hil.cluster.kubeconfig import write_kubeconfig
from hil.cluster.pki import CertificateAuthority, KeyPair, write_service_account_keys

log = logging.getLogger(__name__)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
_LOOPBACK = "127.0.0.1"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"


# Controller-manager and scheduler each run once: there is no one to fail over to, so losing the
# leader lease only ends the component (it exits). With the defaults (renew within 10 s) a
# loaded 2-core host did that mid-benchmark, and no node ever lost its not-ready taint again.
_LEADER_ELECTION = (
    "--leader-elect-lease-duration=120s",
    "--leader-elect-renew-deadline=100s",
    "--leader-elect-retry-period=2s",
)


class ClusterError(RuntimeError):
    """The control plane did not come up, or a component died."""


def free_port() -> int:
    # Bind-and-release has a tiny race window; acceptable on a loopback test host.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


class LocalCluster:
    """A real Kubernetes control plane on loopback, with generated PKI, in its own run directory.

    Attributes after start(): kubeconfig (admin, system:masters), server (https URL),
    ca_cert (PEM path of the one CA that signs every certificate, kubelet serving ones too).
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        die_with_parent: bool = True,
        scheduler_qps: float | None = None,
    ) -> None:
        self._owns_run_dir = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="wirelet-cluster-"))
        self._binaries = binaries
        self._die_with_parent = die_with_parent
        # The scheduler's API budget (client-go QPS, burst twice that); None: its default (50,
        # burst 100), which binds at most ~50 pods/s after the first 100.
        self.scheduler_qps = scheduler_qps
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pki_dir = self.run_dir / "pki"
        self.log_dir = self.run_dir / "logs"
        self.ca_cert = self.pki_dir / "ca.crt"
        self.ca_key = self.pki_dir / "ca.key"
        self.admin = KeyPair(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        self.kubeconfig = self.run_dir / "admin.kubeconfig"
        self.api_port = 0
        self.server = ""
        self.etcd_url = ""
        self.scheduler_port = 0  # its /configz and /healthz (HTTPS), once started
        self._ca: CertificateAuthority | None = None

    @classmethod
    def attach(cls, run_dir: Path, server: str) -> LocalCluster:
        """A handle on a cluster another process started (for status checks, not stop)."""
        handle = cls(run_dir)
        handle._owns_run_dir = False
        handle.server = server
        return handle

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def start(self, timeout: float = 120.0) -> None:
        """Generate PKI, start the four components and wait until the cluster is usable.

        Usable: /readyz ok, the `default` ServiceAccount exists, and controller-manager and
        scheduler hold their leader leases.
        """
        binaries = self._binaries or require_built()
        started = time.monotonic()
        self.api_port = free_port()
        self.server = f"https://{_LOOPBACK}:{self.api_port}"
        self._reset_run_dir()
        self._write_pki()
        try:
            self._start_etcd(binaries)
            self._start_apiserver(binaries)
            self._wait_ready(started + timeout)
            self._start_controller_manager(binaries)
            self._start_scheduler(binaries)
            self._wait_controllers(started + timeout)
        except BaseException:
            self.stop()
            raise
        log.info("control plane %s ready in %.1fs", self.server, time.monotonic() - started)

    def stop(self) -> None:
        """Stop components in reverse start order; safe to call twice."""
        for name in reversed(list(self._procs)):
            process.stop(name, self._procs[name])
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def check_alive(self) -> None:
        """Raise if any component exited."""
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterError(self._died_message(name, proc))

    # -- certificates for callers (virtual kubelets, limited clients) -----------------------

    @property
    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            self._ca = CertificateAuthority.load(KeyPair(self.ca_cert, self.ca_key))
        return self._ca

    def sign_serving_cert(self, hosts: list[str], out_dir: Path) -> tuple[Path, Path]:
        """A serving certificate the API server trusts (--kubelet-certificate-authority)."""
        pair = KeyPair(out_dir / "serving.crt", out_dir / "serving.key")
        self.ca.issue_to_files(pair, hosts[0], hosts=hosts, server=True)
        return pair.cert, pair.key

    def gateway_credentials(self, hosts: list[str], out_dir: Path) -> dict[str, str]:
        """What a gateway beside this control plane needs to talk to it and be called back:
        the admin kubeconfig, the client CA, and a serving certificate for `hosts` (the keys
        of gateway.config.loopback_settings)."""
        cert, key = self.sign_serving_cert(hosts, out_dir)
        return {
            "kubeconfig": str(self.kubeconfig),
            "client_ca": str(self.ca_cert),
            "tls_cert": str(cert),
            "tls_key": str(key),
        }

    def sign_client_cert(
        self, cn: str, orgs: list[str], out_dir: Path | None = None
    ) -> tuple[Path, Path]:
        """A client certificate: the API server authenticates it as user cn in groups orgs."""
        directory = out_dir or self.pki_dir / "clients"
        pair = KeyPair(
            directory / f"{cn.replace(':', '_')}.crt", directory / f"{cn.replace(':', '_')}.key"
        )
        self.ca.issue_to_files(pair, cn, orgs=orgs, client=True)
        return pair.cert, pair.key

    def client_kubeconfig(self, cn: str, orgs: list[str], path: Path | None = None) -> Path:
        """A kubeconfig for user cn in groups orgs, e.g. for a client lacking permissions."""
        cert, key = self.sign_client_cert(cn, orgs)
        target = path or self.run_dir / f"{cn.replace(':', '_')}.kubeconfig"
        return write_kubeconfig(
            target,
            server=self.server,
            ca_cert=self.ca_cert,
            client_cert=cert,
            client_key=key,
            user=cn,
        )

    # -- internals ---------------------------------------------------------------------------

    def _reset_run_dir(self) -> None:
        # A reused run dir must not leak an old CA or etcd data into the new cluster. Remove only
        # what we create, never arbitrary contents of a directory the caller named.
        for sub in ("pki", "etcd", "logs", "apiserver-certs", "controller-manager-certs"):
            shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _write_pki(self) -> None:
        ca = CertificateAuthority.create("wirelet-local-ca")
        ca.save(KeyPair(self.ca_cert, self.ca_key))
        self._ca = ca
        d = self.pki_dir
        ca.issue_to_files(
            KeyPair(d / "apiserver.crt", d / "apiserver.key"),
            "kube-apiserver",
            hosts=[
                _LOOPBACK,
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.96.0.1",
            ],
            server=True,
        )
        ca.issue_to_files(self.admin, "wirelet-admin", orgs=["system:masters"], client=True)
        ca.issue_to_files(
            KeyPair(d / "kubelet-client.crt", d / "kubelet-client.key"),
            "kube-apiserver-kubelet-client",
            orgs=["system:masters"],
            client=True,
        )
        ca.issue_to_files(
            KeyPair(d / "front-proxy-client.crt", d / "front-proxy-client.key"),
            "front-proxy-client",
            client=True,
        )
        write_service_account_keys(d / "sa.key", d / "sa.pub")
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_cert=self.ca_cert,
            client_cert=self.admin.cert,
            client_key=self.admin.key,
            user="wirelet-admin",
        )
        # Components authenticate as the users the bootstrap RBAC policy already grants.
        for component, user in (
            ("controller-manager", "system:kube-controller-manager"),
            ("scheduler", "system:kube-scheduler"),
        ):
            pair = ca.issue_to_files(
                KeyPair(d / f"{component}.crt", d / f"{component}.key"), user, client=True
            )
            write_kubeconfig(
                self.run_dir / f"{component}.kubeconfig",
                server=self.server,
                ca_cert=self.ca_cert,
                client_cert=pair.cert,
                client_key=pair.key,
                user=user,
            )

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._procs[name] = process.spawn(
            name, argv, self.log_dir / f"{name}.log", die_with_parent=self._die_with_parent
        )

    def _start_etcd(self, binaries: Binaries) -> None:
        client = f"http://{_LOOPBACK}:{free_port()}"
        peer = f"http://{_LOOPBACK}:{free_port()}"
        self.etcd_url = client
        self._spawn(
            "etcd",
            [
                str(binaries.etcd),
                "--name=wirelet",
                f"--data-dir={self.run_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=wirelet={peer}",
                # A test cluster: losing data on power loss is fine, fsync latency is not.
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=268435456",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self, binaries: Binaries) -> None:
        d = self.pki_dir
        self._spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--bind-address={_LOOPBACK}",
                f"--advertise-address={_LOOPBACK}",
                f"--secure-port={self.api_port}",
                f"--etcd-servers={self.etcd_url}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={self.ca_cert}",
                f"--cert-dir={self.run_dir / 'apiserver-certs'}",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=false",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # `kubectl logs` reaches the virtual kubelet over TLS verified both ways.
                f"--kubelet-client-certificate={d / 'kubelet-client.crt'}",
                f"--kubelet-client-key={d / 'kubelet-client.key'}",
                f"--kubelet-certificate-authority={self.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                # The kubernetes Service cannot point at a loopback address; skip its endpoints.
                "--endpoint-reconciler-type=none",
                # A request-header CA lets controller-manager and scheduler set up
                # delegated authn without error spam; only CN front-proxy-client may use it.
                f"--requestheader-client-ca-file={self.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={d / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={d / 'front-proxy-client.key'}",
                "--profiling=false",
            ],
        )

    def _start_controller_manager(self, binaries: Binaries) -> None:
        d = self.pki_dir
        kubeconfig = self.run_dir / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={_LOOPBACK}",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.run_dir / 'controller-manager-certs'}",
                "--controllers=*",
                "--leader-elect=true",
                *_LEADER_ELECTION,
                # CSR signing uses the cluster CA, so signed certificates chain to ca.crt.
                f"--cluster-signing-cert-file={self.ca_cert}",
                f"--cluster-signing-key-file={self.ca_key}",
                f"--root-ca-file={self.ca_cert}",
                f"--service-account-private-key-file={d / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--profiling=false",
            ],
        )

    def _start_scheduler(self, binaries: Binaries) -> None:
        kubeconfig = self.run_dir / "scheduler.kubeconfig"
        budget = []
        if self.scheduler_qps is not None:
            burst = max(1, round(2 * self.scheduler_qps))
            budget = [f"--kube-api-qps={self.scheduler_qps:g}", f"--kube-api-burst={burst}"]
        self.scheduler_port = free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={_LOOPBACK}",
                f"--secure-port={self.scheduler_port}",
                "--leader-elect=true",
                *_LEADER_ELECTION,
                "--profiling=false",
                *budget,
            ],
        )

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context trusting the cluster CA and presenting the admin certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return ctx

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET path on the API server as admin; returns (status, body)."""
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()

    def readyz(self) -> bool:
        try:
            status, body = self.get("/readyz")
        except (OSError, urllib.error.URLError):
            return False
        return status == 200 and body.strip() == b"ok"

    def version(self) -> str:
        _status, body = self.get("/version")
        return str(json.loads(body)["gitVersion"])

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            if self.readyz():
                return
            time.sleep(0.25)
        raise ClusterError(f"kube-apiserver not ready at {self.server}; logs in {self.log_dir}")

    def _wait_controllers(self, deadline: float) -> None:
        # "Ready" means usable: pods in `default` need its ServiceAccount (admission rejects them
        # otherwise), and nothing is scheduled or signed until both components lead.
        checks = {
            "default ServiceAccount": "/api/v1/namespaces/default/serviceaccounts/default",
            "controller-manager lease": _LEASES + "kube-controller-manager",
            "scheduler lease": _LEASES + "kube-scheduler",
        }
        pending = dict(checks)
        while time.monotonic() < deadline:
            self.check_alive()
            for what, path in list(pending.items()):
                status, body = self.get(path)
                if status == 200 and (
                    "/leases/" not in path or json.loads(body)["spec"].get("holderIdentity")
                ):
                    del pending[what]
            if not pending:
                return
            time.sleep(0.25)
        raise ClusterError(f"still waiting for {', '.join(pending)}; logs in {self.log_dir}")

    def _died_message(self, name: str, proc: subprocess.Popen[bytes]) -> str:
        tail = ""
        log_path = self.log_dir / f"{name}.log"
        if log_path.exists():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        return f"{name} exited with {proc.returncode}; last log lines:\n{tail}"
