"""The Kubernetes side: nodes, leases, pod watch and status for the gateway's devices."""
