"""The state dir: an identity that survives restarts, a private folder emptied at every start."""

from __future__ import annotations

import socket
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.kube.node_lease import lease_remaining, micro_time
from gateway.state_dir import StateDir


def test_identity_is_kept_across_restarts_and_differs_per_state_dir(tmp_path: Path) -> None:
    first = StateDir(tmp_path / "a").identity()
    assert first.startswith(socket.gethostname() + "-")
    assert StateDir(tmp_path / "a").identity() == first  # a restart: the same owner
    assert StateDir(tmp_path / "b").identity() != first


def test_private_folder_is_0700_and_emptied_at_start(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    private = state.fresh_private()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    (private / "leftover.key").write_text("-----BEGIN PRIVATE KEY-----")  # a killed gateway's
    private = state.fresh_private()
    assert list(private.iterdir()) == []
    state.clear_private()
    assert not private.exists()


def test_unusable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"gateway\.state_dir: cannot create"):
        StateDir(blocker / "state")


def test_lease_remaining_from_renew_time_and_duration() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    renewed = micro_time(now - timedelta(seconds=30))
    lease = {"spec": {"renewTime": renewed, "leaseDurationSeconds": 40}}
    assert lease_remaining(lease, now) == pytest.approx(10.0)
    assert lease_remaining(lease, now + timedelta(seconds=11)) < 0
    assert lease_remaining({"spec": {}}, now) == 0.0
