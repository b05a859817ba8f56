"""When the CSR-issued serving certificate is renewed (the exchange itself is in tests/e2e)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from gateway.kube.api import KubeApi
from gateway.serving_cert import ServingCertificate, self_signed


def test_renewal_is_due_at_the_configured_fraction_of_the_lifetime(tmp_path: Path) -> None:
    cert_path, _ = self_signed(tmp_path, "198.51.100.7")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    serving = ServingCertificate(
        cast(KubeApi, cast(Any, None)),  # never called here
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        tmp_path,
        host="gw",
        ips=["198.51.100.7"],
        dns_names=["gw"],
        approve=False,
        rotate_fraction=0.8,
    )
    assert serving.renew_in() == 0.0  # none yet: at once
    serving.current = cert
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    due = start + (end - start) * 0.8
    assert serving.renew_in(due - datetime.timedelta(seconds=10)) == 10.0
    assert serving.renew_in(due + datetime.timedelta(days=1)) == 0.0
