"""bench.scale's "what a deployment hits first" figure is not made up from a negative share."""

from __future__ import annotations

from bench.control_plane import QUIET_APISERVER_PERCENT, QUIET_SLICES, Idle, is_quiet
from bench.scale_limit import api_server_limit


def _result(apiserver_percent: float) -> dict[str, object]:
    return {
        "devices": 1000,
        "api_requests_per_s_total": 104.0,
        "control_plane_cpu_percent": {"kube-apiserver": apiserver_percent},
        "gateway_cpu_percent": {"median": 8.0},
    }


def test_the_api_servers_share_is_what_it_used_above_idle() -> None:
    limit = api_server_limit(_result(15.0), Idle(cpu_percent={"kube-apiserver": 5.0}))
    assert "unmeasured" not in limit
    assert round(limit["apiserver_cpu_ms_per_request"], 3) == round(10.0 * 10.0 / 104.0, 3)


def test_an_api_server_busier_before_the_gateway_started_is_said_not_measured() -> None:
    limit = api_server_limit(_result(40.0), Idle(cpu_percent={"kube-apiserver": 48.0}))
    assert "40.0% of a core in the steady window and 48.0% in the idle one" in limit["unmeasured"]


def test_the_idle_window_waits_for_namespaces_being_deleted_and_a_busy_api_server() -> None:
    calm = [QUIET_APISERVER_PERCENT / 3] * QUIET_SLICES
    assert is_quiet(calm, [])
    assert not is_quiet(calm, ["bench-pods-wirelet-1a2b3c"])
    assert not is_quiet(calm[:-1], [])  # too few slices to tell
    assert not is_quiet([*calm[:-1], QUIET_APISERVER_PERCENT * 4], [])
    assert is_quiet([QUIET_APISERVER_PERCENT * 4, *calm], [])  # busy before, quiet now
