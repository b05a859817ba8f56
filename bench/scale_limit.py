"""What a deployment hits first, from one one-gateway scale run: the API server's CPU per
request and per device against the gateway's, set beside a kubelet's steady requests and the
default QPS budget.

Apart from the runs (bench.scale): pure arithmetic on a run's result and the idle control plane.
"""

from __future__ import annotations

from typing import Any

from bench.common import say
from bench.control_plane import Idle
from gateway.app import BURST_PER_DEVICE, QPS_PER_DEVICE
from gateway.config import KubeConfig

# A kubelet's steady API requests per node, from its defaults (pkg/kubelet, client-go):
# the node Lease is renewed (PUT) every 10 s (a quarter of the 40 s lease); node status is
# computed every 10 s (nodeStatusUpdateFrequency) and PATCHed when changed or every 5 min
# (nodeStatusReportFrequency); before it read its Node from an informer, every status
# computation was a GET of the Node from the API server's cache (0.1/s); its ~6 watches (its
# Node, its pods, services, runtime classes, CSI drivers, its pods' config maps and secrets)
# are re-opened every 5-10 min (client-go's reflector timeout), and stay open meanwhile.
KUBELET_REQUESTS_PER_S = {
    "lease renew (PUT)": 0.1,
    "node status (PATCH, unchanged)": 1 / 300,
    "watches re-opened (~6, every 5-10 min)": 6 / 450,
}
KUBELET_OLD_NODE_GET_PER_S = 0.1  # kubelets that GET their Node every status computation


def api_server_limit(result: dict[str, Any], idle: Idle) -> dict[str, Any]:
    """From one one-gateway run: requests/s per device, the API server's CPU per request and per
    device (above its idle CPU), and the device counts at which the API server and the gateway
    would each need a whole core; and at the default QPS budget (QPS_PER_DEVICE per device),
    the count beyond which the budget asks more of the API server than one core answers."""
    devices = result["devices"]
    per_s = result["api_requests_per_s_total"]
    apiserver = result["control_plane_cpu_percent"].get("kube-apiserver", float("nan"))
    apiserver_above_idle = apiserver - idle.cpu_percent.get("kube-apiserver", 0.0)
    gateway = result["gateway_cpu_percent"]["median"]
    cpu_ms_per_request = 10.0 * apiserver_above_idle / per_s if per_s else float("nan")
    kubelet = sum(KUBELET_REQUESTS_PER_S.values())
    figure = {
        "devices": devices,
        "requests_per_s_per_device": per_s / devices,
        "kubelet_requests_per_s_per_node": kubelet,
        "kubelet_requests_per_s_per_node_with_node_get": kubelet + KUBELET_OLD_NODE_GET_PER_S,
        "kubelet_requests": KUBELET_REQUESTS_PER_S,
        "apiserver_cpu_percent_above_idle": apiserver_above_idle,
        "apiserver_cpu_ms_per_request": cpu_ms_per_request,
        "apiserver_cpu_percent_per_device": apiserver_above_idle / devices,
        "gateway_cpu_percent_per_device": gateway / devices,
        "devices_per_apiserver_core": 100.0 * devices / apiserver_above_idle,
        "devices_per_gateway_core": 100.0 * devices / gateway,
        "default_qps_per_device": QPS_PER_DEVICE,
        "default_burst_per_device": BURST_PER_DEVICE,
        "default_qps_floor": KubeConfig().qps,
        # The budget lets a gateway of N devices ask QPS_PER_DEVICE * N requests/s (start-up,
        # re-lists, a burst of pod changes); one API-server core answers 1000/cpu_ms of them.
        "devices_where_budget_exceeds_one_apiserver_core": (
            1000.0 / cpu_ms_per_request / QPS_PER_DEVICE if per_s else float("nan")
        ),
        "budget_apiserver_cpu_percent_per_device": QPS_PER_DEVICE * cpu_ms_per_request / 10.0,
    }
    figure["first_limit"] = (
        "API server"
        if figure["devices_per_apiserver_core"] < figure["devices_per_gateway_core"]
        else "gateway"
    )
    if not apiserver_above_idle > 0:
        # The API server was as busy or busier before the gateway started (a control plane
        # still settling): no share of its CPU is the gateway's to divide by.
        figure["unmeasured"] = (
            f"the API server used {apiserver:.1f}% of a core in the steady window and "
            f"{apiserver - apiserver_above_idle:.1f}% in the idle one before the gateway "
            "started: its CPU per request cannot be told in this run"
        )
        say(f"  what a deployment hits first: not measured: {figure['unmeasured']}")
        return figure
    say(
        f"  what a deployment hits first ({devices} devices on one gateway): "
        f"{figure['requests_per_s_per_device']:.3f} API requests/s per device (a kubelet: "
        f"{kubelet:.3f}, {kubelet + KUBELET_OLD_NODE_GET_PER_S:.3f} with its node GETs); the API "
        f"server spends {cpu_ms_per_request:.2f} ms of CPU per request, "
        f"{figure['apiserver_cpu_percent_per_device'] * 1000:.1f}% of a core per 1000 devices "
        f"(the gateway {figure['gateway_cpu_percent_per_device'] * 1000:.1f}%); one core "
        f"carries {figure['devices_per_apiserver_core']:.0f} devices' steady traffic on the API "
        f"server, {figure['devices_per_gateway_core']:.0f} on the gateway: the "
        f"{figure['first_limit']} runs out first. The default budget ({QPS_PER_DEVICE:g} QPS "
        f"per device) exceeds what one API-server core answers from "
        f"{figure['devices_where_budget_exceeds_one_apiserver_core']:.0f} devices on "
        f"({figure['budget_apiserver_cpu_percent_per_device']:.1f}% of a core per device if "
        "used in full)."
    )
    return figure
