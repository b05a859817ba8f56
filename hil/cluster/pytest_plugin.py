"""Session-wide LocalCluster for pytest (used by the `cluster` fixture in tests/conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from hil.cluster.build import BuildError, require_built
from hil.cluster.local import LocalCluster

log = logging.getLogger(__name__)


def session_cluster() -> Iterator[LocalCluster]:
    """Start one control plane for the whole test session and stop it at the end."""
    try:
        binaries = require_built()
    except BuildError as exc:
        # Building takes minutes; do it up front (`make cluster-build`), not inside a test timeout.
        pytest.fail(str(exc))
    with LocalCluster(binaries=binaries) as cluster:
        log.info("test control plane at %s, kubeconfig %s", cluster.server, cluster.kubeconfig)
        yield cluster
