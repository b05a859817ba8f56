"""The kubelet's admission on a device node: a pod the node's allocatable cannot hold beside the
pods already admitted, or one whose spec a device cannot honour, is refused before anything of
it runs. Pure: the pod controller keeps the admitted pods and writes the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from gateway.kube.pod_view import PodView
from gateway.kube.quantity import parse_quantity


def admission_refusal(
    pod: PodView, others: Sequence[PodView], allocatable: Mapping[str, str]
) -> tuple[str, str] | None:
    """Why the node refuses `pod` beside the admitted, running `others`, as the kubelet's
    (reason, message); None when it fits."""
    init = [str(c.get("name")) for c in pod.raw["spec"].get("initContainers") or []]
    if init:
        # Running the containers without them would break the pod's contract (an init
        # container is a precondition), so fail clearly as the kubelet does a pod it
        # cannot run.
        return (
            "InitContainersNotSupported",
            f"init containers ({', '.join(init)}) cannot run on a wirelet device node; "
            "do their work in the pod's containers or schedule the pod on another node",
        )
    # The node's "pods" is the device's task slots, and each container runs as one task:
    # containers are counted, or two pods that each fit would together wait for a slot
    # forever (NO_SLOTS), the later starts refused.
    checks = [
        (
            "pods",
            Decimal(max(len(pod.regular_containers), 1)),
            Decimal(sum(max(len(other.regular_containers), 1) for other in others)),
        )
    ]
    for resource in ("cpu", "memory"):
        try:
            requested = sum((c.request(resource) for c in pod.regular_containers), Decimal(0))
            if not requested:
                continue  # nothing to fit: the others' requests need not be added up
            used = sum(
                (c.request(resource) for other in others for c in other.regular_containers),
                Decimal(0),
            )
        except ValueError as exc:
            return "InvalidResources", str(exc)
        checks.append((resource, requested, used))
    for resource, want, used_now in checks:
        capacity = parse_quantity(allocatable.get(resource, "0"))
        if used_now + want > capacity:
            # The kubelet's figures: whole numbers, CPU in millicores.
            unit = 1000 if resource == "cpu" else 1
            want_n, used_n, cap_n = (int(q * unit) for q in (want, used_now, capacity))
            slots = " (task slots: each container is one task)" if resource == "pods" else ""
            return (
                f"OutOf{resource}",
                f"Node didn't have enough resource: {resource}, requested: {want_n}, "
                f"used: {used_n}, capacity: {cap_n}{slots}",
            )
    return None
