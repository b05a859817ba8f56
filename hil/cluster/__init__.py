"""A real local Kubernetes control plane on loopback, built from one pinned release."""

from hil.cluster.build import KUBERNETES_VERSION, Binaries, BuildError
from hil.cluster.local import ClusterError, LocalCluster

__all__ = ["KUBERNETES_VERSION", "Binaries", "BuildError", "ClusterError", "LocalCluster"]
