"""The console script's basic contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway import __version__
from gateway.cli import main


def test_version_flag_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"wirelet {__version__}"


def test_console_script_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "Kubernetes nodes" in out.stdout


def test_run_with_bad_config_exits_2_naming_the_key(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "bad.toml"
    config.write_text("[kubelet]\nport = 'ten'\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "kubelet.port: expected an integer from 0 to 65535, got 'ten'" in out.stderr
    assert str(config) in out.stderr


def test_run_with_unreadable_kubeconfig_is_a_clear_error(tmp_path: object) -> None:
    from pathlib import Path

    missing = Path(str(tmp_path)) / "nope.kubeconfig"
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--kubeconfig", str(missing)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert str(missing) in out.stderr
