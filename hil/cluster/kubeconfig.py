"""Write self-contained kubeconfig files (certificates embedded, no paths to go stale)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from hil.cluster.pki import write_private


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    client_cert: Path,
    client_key: Path,
    user: str,
    cluster_name: str = "wirelet",
) -> Path:
    """Write a kubeconfig with one cluster, one user and a current context using them."""
    # JSON is valid YAML, so every client (kubectl, client-go, kubernetes_asyncio) reads this.
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert),
                    "client-key-data": _b64(client_key),
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }
    write_private(path, (json.dumps(doc, indent=2) + "\n").encode())  # it holds a key
    return path
