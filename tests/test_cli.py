"""The console script's basic contract."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli import main
from gateway.commands.run import setup_logging
from tests.offline_cluster import offline_kubeconfig


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


@pytest.mark.parametrize("content", ["garbage\n", "clusters: 5\n", ""])
def test_run_with_a_kubeconfig_of_the_wrong_shape_is_a_clear_error(
    tmp_path: Path, content: str
) -> None:
    """YAML that is not a kubeconfig (a word, a number where a list belongs, nothing at all):
    a config error naming the file with exit 2, never a traceback."""
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(content)
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--kubeconfig", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert str(bad) in out.stderr
    assert "not a kubeconfig" in out.stderr, out.stderr


# --- flags get the config file's checks (exit 2, a clear message, never a traceback) ---------


def run_gateway(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--kubelet-port", "99999"],
            "--kubelet-port (kubelet.port): expected an integer from 0 to 65535, got 99999",
        ),
        (
            ["--kubelet-port", "-1"],
            "--kubelet-port (kubelet.port): expected an integer from 0 to 65535, got -1",
        ),
        (
            ["--kubelet-port", "ten"],
            "--kubelet-port (kubelet.port): expected an integer from 0 to 65535, got 'ten'",
        ),
        (["--node-ip", "bad"], "--node-ip (kubelet.node_ip): expected an IP address, got 'bad'"),
        (["--node-prefix", "Bad_"], "--node-prefix (nodes.name_prefix): expected lower-case"),
        (
            ["--tls-cert", "/c.pem"],
            "--tls-cert (kubelet.tls_cert): kubelet.tls_cert and kubelet.tls_key go together",
        ),
    ],
)
def test_bad_flags_exit_2_with_the_files_message(flags: list[str], message: str) -> None:
    out = run_gateway(*flags)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_flag_on_top_of_a_good_file_still_fails(tmp_path: Path) -> None:
    config = tmp_path / "wirelet.toml"
    config.write_text("[kubelet]\nport = 10250\n")
    out = run_gateway("-c", str(config), "--kubelet-port", "70000")
    assert out.returncode == 2
    assert "--kubelet-port (kubelet.port): expected an integer from 0 to 65535" in out.stderr


def test_missing_device_dir_is_said(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    out = run_gateway("--dir", str(missing), "--kubeconfig", str(tmp_path / "nope"))
    assert f"devices.dirs: {missing} does not exist (yet)" in out.stderr
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    out = run_gateway("--dir", str(not_a_dir))
    assert out.returncode == 2
    assert f"devices.dirs: {not_a_dir} exists but is not a directory" in out.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        flags = _serving_flags(tmp_path)
        flags[flags.index("--kubelet-port") + 1] = str(port)
        out = run_gateway(*flags)
    assert out.returncode == 2, out.stderr
    assert f"kubelet.port: cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def key_material(directory: Path) -> list[Path]:
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            found.append(path)
    return found


def test_sigkilled_gateway_leaves_no_key_in_the_temp_dir(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    state = tmp_path / "state"
    env = {**os.environ, "TMPDIR": str(temp)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "run",
            *_serving_flags(tmp_path),  # its state dir is `state`
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if " up: kubelet API on " in line:
                break
        else:
            raise AssertionError(f"gateway ended before it was up (exit {proc.wait()})")
        # Up: clients and the kubelet API hold their keys in memory now.
        assert key_material(temp) == []
        assert key_material(state) == []
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert key_material(temp) == []
    assert key_material(state) == []
    assert (state / "gateway-id").read_text().strip()


def test_demo_device_hint_runs_as_printed(tmp_path: Path) -> None:
    # It printed `python -m hil.emulator ...`: outside the venv that is another Python (no
    # module hil) or no command at all.
    from gateway.commands.demo import device_ctl_hint

    argv = [*device_ctl_hint(tmp_path).split()[:-2], "list"]  # "demo-0 unplug|..." -> list
    assert argv[0] == sys.executable
    out = subprocess.run(argv, capture_output=True, text=True, cwd="/", check=False)
    assert "No module named" not in out.stderr


@pytest.mark.parametrize(("flags", "level"), [(0, "INFO"), (2, "DEBUG"), (3, "TRACE")])
def test_verbose_flags_set_the_log_level(flags: int, level: str) -> None:
    """-vvv logs the device links' bytes (the link's TRACE level, below DEBUG)."""
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    root.handlers.clear()  # basicConfig only configures a root logger without handlers
    try:
        setup_logging(flags)
        assert logging.getLevelName(root.level) == level
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def _serving_flags(tmp_path: Path) -> list[str]:
    return [
        "--kubeconfig",
        str(offline_kubeconfig(tmp_path)),
        "--state-dir",
        str(tmp_path / "state"),
        "--log-dir",
        str(tmp_path / "pods"),
        "--kubelet-address",
        "127.0.0.1",
        "--kubelet-port",
        "0",
        "--node-ip",
        "127.0.0.1",
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--tls-cert", "{tmp}/none.crt", "--tls-key", "{tmp}/none.key"],
            "kubelet.tls_cert: cannot read {tmp}/none.crt: No such file or directory",
        ),
        (
            ["--tls-cert", "{tmp}/text", "--tls-key", "{tmp}/text"],
            "kubelet.tls_cert/tls_key: {tmp}/text and {tmp}/text are not a PEM certificate "
            "and its private key",
        ),
        (
            ["--client-ca", "{tmp}/none-ca.crt"],
            "kubelet.client_ca: cannot read {tmp}/none-ca.crt: No such file or directory",
        ),
        (
            ["--client-ca", "{tmp}/text"],
            "kubelet.client_ca: {tmp}/text holds no PEM CA certificate",
        ),
        (
            ["--log-dir", "{tmp}/text"],
            "logs.dir: cannot create {tmp}/text: File exists",
        ),
    ],
    ids=["missing-cert", "cert-not-pem", "missing-client-ca", "client-ca-not-pem", "log-dir-file"],
)
def test_bad_files_for_the_kubelet_api_and_logs_are_config_errors(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    """A serving certificate, client CA or log dir that cannot be used stops the gateway with
    a config error naming the key and the file (exit 2), never a traceback."""
    (tmp_path / "text").write_text("not a certificate\n")
    tmp = str(tmp_path)
    out = run_gateway(*_serving_flags(tmp_path), *(f.format(tmp=tmp) for f in flags))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert message.format(tmp=tmp) in out.stderr, out.stderr
