"""The TLS side of the kubelet API: serving certificate, optional client certificates."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_ssl_context(
    cert_file: Path, key_file: Path, client_ca_file: Path | None
) -> ssl.SSLContext:
    """A server context like the kubelet's `--tls-cert-file` and `--client-ca-file`.

    Client certificates are optional (CERT_OPTIONAL) so that bearer-token clients can
    connect; a certificate that is presented must chain to the client CA or the handshake
    fails.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
