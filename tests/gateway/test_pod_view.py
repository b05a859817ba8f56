"""The typed pod view: the API's defaults applied in one place, containers then ephemeral
containers, the status on record read back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.kube.pod_view import PodView, app_of
from gateway.runtime.model import DEFAULT_GRACE_PERIOD_S, ContainerPhase, RestartPolicy

META = {"uid": "u1", "namespace": "ns", "name": "p"}


def test_a_bare_pod_gets_the_api_defaults() -> None:
    view = PodView.parse({"metadata": META})
    assert (view.uid, view.key, view.node_name, view.phase) == ("u1", "ns/p", "", "")
    assert view.restart_policy is RestartPolicy.ALWAYS
    assert view.grace_period_s == view.deletion_grace_s == DEFAULT_GRACE_PERIOD_S
    assert not view.deleting and not view.terminal
    assert view.containers == () and view.start_time is None


def test_a_zero_grace_period_is_zero_not_the_default() -> None:
    pod = {
        "metadata": {**META, "deletionTimestamp": "x", "deletionGracePeriodSeconds": 0},
        "spec": {"terminationGracePeriodSeconds": 0},
    }
    view = PodView.parse(pod)
    assert view.deleting
    assert (view.grace_period_s, view.deletion_grace_s) == (0.0, 0.0)


def test_containers_come_first_then_ephemeral_containers() -> None:
    spec = {
        "nodeName": "n",
        "restartPolicy": "OnFailure",
        "containers": [
            {"name": "a", "image": "reg.io/apps/counter:1.0"},
            {"name": "b", "image": "echo", "resources": {"limits": {"memory": "1Ki"}}},
        ],
        "ephemeralContainers": [{"name": "dbg", "image": "echo@sha256:00"}],
    }
    view = PodView.parse({"metadata": META, "spec": spec})
    assert [(c.name, c.app, c.ephemeral) for c in view.containers] == [
        ("a", "counter", False),
        ("b", "echo", False),
        ("dbg", "echo", True),
    ]
    assert [c.name for c in view.regular_containers] == ["a", "b"]
    assert view.restart_policy is RestartPolicy.ON_FAILURE
    assert view.containers[1].memory_request() == Decimal(1024)  # limits stand in for requests
    bad = PodView.parse(
        {
            "metadata": META,
            "spec": {"containers": [{"name": "x", "resources": {"requests": {"memory": "lots"}}}]},
        }
    )
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        bad.containers[0].memory_request()


def test_the_status_on_record_is_read_back() -> None:
    status = {
        "phase": "Running",
        "startTime": "2026-01-01T00:00:00Z",
        "containerStatuses": [
            {
                "name": "a",
                "restartCount": 3,
                "state": {"terminated": {"exitCode": 2, "reason": "Error"}},
            }
        ],
        "ephemeralContainerStatuses": [
            {"name": "dbg", "state": {"running": {"startedAt": "2026-01-01T00:00:09Z"}}}
        ],
    }
    view = PodView.parse({"metadata": META, "status": status})
    assert view.start_time == datetime(2026, 1, 1, tzinfo=UTC)
    a = view.prior_status("a")
    assert a.restart_count == 3 and a.state is not None
    assert (a.state.phase, a.state.exit_code, a.state.reason) == (
        ContainerPhase.TERMINATED,
        2,
        "Error",
    )
    dbg = view.prior_status("dbg")
    assert dbg.state is not None and dbg.state.started_at == datetime(
        2026, 1, 1, 0, 0, 9, tzinfo=UTC
    )
    assert view.recorded_status("missing") is None
    assert view.prior_status("missing").restart_count == 0


def test_an_image_names_its_app() -> None:
    for image in ("counter", "counter:1.0", "apps/counter", "r.io:5000/a/counter@sha256:ab"):
        assert app_of(image) == "counter"
