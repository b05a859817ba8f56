"""The pure parts of the SSH executor: config, task ids, answer framing, probe facts."""

from __future__ import annotations

import subprocess

import pytest

from gateway.config import config_from_mapping
from gateway.config_ssh import parse_host_flag
from gateway.errors import ConfigError
from gateway.ssh import remote
from gateway.ssh.remote import ListedTask, OutputChunk, PollAnswerError


def test_ssh_hosts_config() -> None:
    config = config_from_mapping(
        {
            "ssh": {
                "poll_interval_s": 0.5,
                "hosts": [
                    {"address": "pi.lab", "user": "pi", "capacity": {"cpu": "4", "pods": 8}},
                    {"address": "10.0.0.7", "id": "jetson-1", "port": 2222},
                ],
            }
        },
        "f.toml",
    )
    pi, jetson = config.ssh.hosts
    assert (pi.host_id, pi.user, pi.port, dict(pi.capacity)) == (
        "pi.lab",
        "pi",
        22,
        {"cpu": "4", "pods": "8"},
    )
    assert (jetson.host_id, jetson.port, jetson.label) == (
        "jetson-1",
        2222,
        f"ssh://{jetson.user}@10.0.0.7:2222",
    )
    assert config.ssh.poll_interval_s == 0.5
    # One state directory per node by default: two nodes on one account never share tasks.
    assert (pi.state_dir, jetson.state_dir) == (".wirelet/tasks/pi.lab", ".wirelet/tasks/jetson-1")


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ([{"user": "x"}], r"f.toml: ssh.hosts\[0\].address: expected the host name"),
        ([{"address": "a", "prot": 22}], r"unknown key 'prot' in \[ssh.hosts\[0\]\]"),
        ([{"address": "a", "port": 70000}], r"ssh.hosts\[0\].port: expected an integer"),
        ([{"address": "a"}, {"address": "a"}], r"'a' is used twice"),
        ([{"address": "a", "id": "bad id"}], r"cannot name a node"),
        ([{"address": "a", "capacity": {"gpu": "1"}}], r"expected one of cpu, memory, pods"),
        ("nope", r"ssh.hosts: expected an array of tables"),
    ],
)
def test_ssh_config_errors_name_file_and_key(hosts: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({"ssh": {"hosts": hosts}}, "f.toml")


def test_host_flag() -> None:
    host = parse_host_flag("pi@10.0.0.5:2200")
    assert (host.user, host.address, host.port, host.host_id) == (
        "pi",
        "10.0.0.5",
        2200,
        "10.0.0.5",
    )
    assert parse_host_flag("box").port == 22
    with pytest.raises(ConfigError, match="bad port"):
        parse_host_flag("pi@box:x")


def test_task_ids_never_escape_the_state_dir() -> None:
    assert remote.task_id_ok("0b7e1c2a-0000-4000-8000-00000000ab01/0/3")
    for bad in ["../x/0", "a/../0", "/abs/0/0", "a/0", "a/0/0/0", "a b/0/0", "a/$(x)/0", "a//0"]:
        assert not remote.task_id_ok(bad), bad


def test_poll_answer_framing_with_binary_output() -> None:
    data = b"line\nEND\nO fake\x00\xff"
    answer = (
        b"T u/0/0 exit 3 14 0 5 0\nT u/1/0 run - 0 0 0 0\n"
        + f"O u/0/0 stdout 5 {len(data)}\n".encode()
        + data
        + b"END\n"
    )
    tasks, chunks = remote.parse_poll(answer)
    assert tasks == [
        ListedTask("u/0/0", "exit", 3, (14, 0), (5, 0)),
        ListedTask("u/1/0", "run", None, (0, 0), (0, 0)),
    ]
    assert chunks == [OutputChunk("u/0/0", "stdout", 5, data)]
    with pytest.raises(PollAnswerError, match="cut off"):
        remote.parse_poll(answer[:-4])
    with pytest.raises(PollAnswerError, match="unexpected line"):
        remote.parse_poll(b"zsh: command not found\nEND\n")


def test_poll_script_runs_in_sh_and_reads_by_offset(tmp_path: object) -> None:
    """The script itself, in a real /bin/sh, over a real state directory."""
    from pathlib import Path

    root = Path(str(tmp_path))
    task = root / "u" / "0" / "0"
    task.mkdir(parents=True)
    (task / "stdout").write_bytes(b"0123456789")
    (task / "exit").write_text("0\n")
    script = remote.poll_script(
        str(root),
        acks=[("u/0/0", 4, 0)],
        reads=[remote.ReadRequest("u/0/0", "stdout", 4, 3)],
    )
    answer = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    tasks, chunks = remote.parse_poll(answer)
    assert tasks == [ListedTask("u/0/0", "exit", 0, (10, 0), (4, 0))]
    assert chunks == [OutputChunk("u/0/0", "stdout", 4, b"456")]


def test_probe_facts_and_arch_names() -> None:
    facts = remote.parse_probe("Linux\n6.1.0\naarch64\n4\n3906252\nabc-boot\npi\nEND\n")
    assert (facts.os, facts.cpus, facts.memory_bytes, facts.hostname) == (
        "linux",
        4,
        3906252 * 1024,
        "pi",
    )
    assert [remote.k8s_arch(m) for m in ("x86_64", "aarch64", "armv7l", "riscv64")] == [
        "amd64",
        "arm64",
        "arm",
        "riscv64",
    ]
    with pytest.raises(PollAnswerError, match="lacks setsid"):
        remote.parse_probe("Linux\n6\nx86_64\n1\n1\nb\nh\nmissing setsid\nEND\n")
