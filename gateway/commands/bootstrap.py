"""`wirelet bootstrap`: the gateway's own client identity through a CertificateSigningRequest.

From an admin or bootstrap-token kubeconfig: makes a key, asks the API server for a client
certificate for user `wirelet:gateway:<name>` in group `wirelet:gateways` (signer
kubernetes.io/kube-apiserver-client), waits for approval (printing the exact
`kubectl certificate approve` command, or approving itself with --approve), and writes a
kubeconfig for `wirelet run --kubeconfig`. deploy/rbac.yaml grants that group what a gateway
needs and nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import sys
from pathlib import Path
from typing import Any

from gateway.certs import new_key, write_key
from gateway.csr import (
    GATEWAY_GROUP,
    CsrError,
    approve,
    client_request,
    gateway_user,
    submit,
    wait_for_certificate,
)
from gateway.errors import ConfigError
from gateway.kube.api import KubeApi, load_configuration

EXIT_FAILED = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bootstrap",
        help="get the gateway a client certificate through a CSR and write its kubeconfig",
        description=(
            "Create a key and a CertificateSigningRequest for the gateway's identity "
            f"(user {gateway_user('NAME')}, group {GATEWAY_GROUP}), wait for its approval, "
            "and write OUT/kubeconfig for `wirelet run --kubeconfig OUT/kubeconfig`. "
            "Apply deploy/rbac.yaml once so that the group may do what a gateway does."
        ),
    )
    parser.add_argument(
        "--kubeconfig",
        required=True,
        help="an admin or bootstrap-token kubeconfig that may create CSRs",
    )
    parser.add_argument(
        "--name",
        default=socket.gethostname(),
        help="the gateway's name (default: this host's name)",
    )
    parser.add_argument("--out", required=True, help="directory for the key, cert, kubeconfig")
    parser.add_argument(
        "--approve",
        action="store_true",
        help="approve the request with --kubeconfig's identity (needs the approve permission)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for approval and signing (default 600)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("wirelet bootstrap: --timeout must be > 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    try:
        configuration = asyncio.run(load_configuration(args.kubeconfig))
        out.mkdir(parents=True, exist_ok=True)
        key = new_key()
        key_path = write_key(out / "gateway.key", key)
        certificate = asyncio.run(_request(configuration, key, args))
        cert_path = out / "gateway.crt"
        cert_path.write_bytes(certificate)
        ca = Path(configuration.ssl_ca_cert).read_bytes() if configuration.ssl_ca_cert else b""
        path = write_gateway_kubeconfig(
            out / "kubeconfig",
            server=configuration.host or "",
            ca_pem=ca,
            cert=cert_path,
            key=key_path,
            user=gateway_user(args.name),
        )
    except ConfigError as exc:
        print(f"wirelet bootstrap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CsrError, OSError) as exc:
        print(f"wirelet bootstrap: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {path}: run `wirelet run --kubeconfig {path}`")
    return 0


async def _request(configuration: Any, key: Any, args: argparse.Namespace) -> bytes:
    async with KubeApi(configuration) as api:
        csr_name = await submit(api, client_request(key, args.name))
        print(f"created CertificateSigningRequest {csr_name} for user {gateway_user(args.name)}")
        if args.approve:
            await approve(api, csr_name, "approved by wirelet bootstrap --approve")
            print(f"approved {csr_name}")
        return await wait_for_certificate(
            api, csr_name, timeout_s=args.timeout, remind=lambda m: print(m, flush=True)
        )


def write_gateway_kubeconfig(
    path: Path, *, server: str, ca_pem: bytes, cert: Path, key: Path, user: str
) -> Path:
    """A kubeconfig naming the key and certificate files (no copy of the key inside it)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "wirelet", "cluster": cluster}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(cert.resolve()),
                    "client-key": str(key.resolve()),
                },
            }
        ],
        "contexts": [{"name": "wirelet", "context": {"cluster": "wirelet", "user": user}}],
        "current-context": "wirelet",
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")  # JSON is YAML: every client reads it
    return path
