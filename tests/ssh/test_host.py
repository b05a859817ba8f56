"""The SSH executor against a real OpenSSH server on loopback (no cluster): commands, quoting,
env, workingDir, exit codes, stop with grace, adoption across dropped connections and gateway
restarts, offsets, host key and authentication failures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import DeviceRejected
from gateway.link.events import Reconciled, TaskExited, TaskLost, TaskStarted
from gateway.link.state import SessionState
from gateway.ssh.host import REASON_AUTH, REASON_HOST_KEY
from tests.ssh.helpers import WAIT, Consumer, ssh_host
from tests.ssh.sshd import Sshd, keygen, running_sshd

UID = "0b7e1c2a-0000-4000-8000-00000000ab01"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def pgrep(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return found.stdout.split()


async def up(consumer: Consumer) -> None:
    await consumer.host.wait_state(SessionState.UP, timeout_s=WAIT)


async def test_metacharacters_env_and_working_dir_reach_the_program_unchanged(
    sshd: Sshd, tmp_path: Path
) -> None:
    workdir = tmp_path / "a dir; with $(spaces)"
    workdir.mkdir()
    marker = tmp_path / "must-not-exist"
    args = [
        "with space",
        'it\'s "quoted"',
        f"$(touch {marker})",
        f"; touch {marker}",
        "`touch x`",
        "*",
        "",
        "tab\there",
        "line\nbreak",
    ]
    env = [("PLAIN", "v"), ("TRICKY", f"a b $(touch {marker}) 'c' \"d\" ;e")]
    script = 'for a in "$@"; do printf "<%s>\\n" "$a"; done; echo "$PLAIN|$TRICKY"; pwd; exit 3'
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        task = f"{UID}/0/0"
        await consumer.host.start_task(
            task, "ignored", ["sh", "-c", script, "sh", *args], env, working_dir=str(workdir)
        )
        exited = await consumer.exited(task)
    assert isinstance(exited, TaskExited) and exited.exit_code == 3
    expected = "".join(f"<{a}>\n" for a in args) + f"v|{env[1][1]}\n{workdir}\n"
    assert consumer.text(task) == expected
    assert not marker.exists()
    assert any(isinstance(e, TaskStarted) and e.task_id == task for e in consumer.events)


async def test_stdout_and_stderr_apart_and_state_removed_once_acknowledged(sshd: Sshd) -> None:
    task = f"{UID}/1/0"
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        await consumer.host.start_task(task, "x", ["sh", "-c", "echo out; echo err >&2"], [])
        exited = await consumer.exited(task)
        assert isinstance(exited, TaskExited) and exited.exit_code == 0
        assert (consumer.text(task), consumer.text(task, "stderr")) == ("out\n", "err\n")
        # Reported and acknowledged: the task's directory goes, and its pod's with it.
        await consumer.wait("state removed", lambda: not (sshd.home_state / UID).exists())


async def test_bad_working_dir_and_empty_command_are_clear_errors(sshd: Sshd) -> None:
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        with pytest.raises(DeviceRejected, match="workingDir /no/such/dir is not a directory"):
            await consumer.host.start_task(
                f"{UID}/0/0", "x", ["true"], [], working_dir="/no/such/dir"
            )
        with pytest.raises(DeviceRejected, match="set `command`"):
            await consumer.host.start_task(f"{UID}/0/0", "x", [], [])
        assert not (sshd.home_state / UID).exists()
        # A command that does not exist: the program's own status, as a shell reports it.
        await consumer.host.start_task(f"{UID}/0/1", "x", ["no-such-program-xyz"], [])
        exited = await consumer.exited(f"{UID}/0/1")
        assert isinstance(exited, TaskExited) and exited.exit_code == 127
        assert "no-such-program-xyz" in consumer.text(f"{UID}/0/1", "stderr")


async def test_graceful_stop_sigterm_then_exit(sshd: Sshd) -> None:
    task = f"{UID}/0/0"
    script = 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.05; done'
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        await consumer.host.start_task(task, "x", ["sh", "-c", script, "graceful-8a1"], [])
        await consumer.wait("ready", lambda: "ready" in consumer.text(task))
        await consumer.host.stop_task(task, 10.0)
        exited = await consumer.exited(task)
        assert isinstance(exited, TaskExited) and exited.exit_code == 0
        assert consumer.text(task) == "ready\ngot-term\n"
        assert pgrep("graceful-8a1") == []


async def test_stop_kills_after_grace_and_leaves_no_process(sshd: Sshd) -> None:
    task = f"{UID}/0/0"
    # Ignores SIGTERM, and has a child in its process group that would outlive a plain kill.
    script = 'trap "" TERM; sleep 1000 & echo ready; while :; do sleep 0.05; done'
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        await consumer.host.start_task(task, "x", ["sh", "-c", script, "stubborn-8a1"], [])
        await consumer.wait("ready", lambda: "ready" in consumer.text(task))
        assert await consumer.host.processes_alive(task) >= 2
        await consumer.host.stop_task(task, 0.3)
        exited = await consumer.exited(task)
        assert isinstance(exited, TaskExited) and exited.exit_code == 137
        assert await consumer.host.processes_alive(task) == 0
        assert pgrep("stubborn-8a1") == []
        # Force (grace 0): SIGKILL at once.
        task2 = f"{UID}/1/0"
        await consumer.host.start_task(task2, "x", ["sh", "-c", script, "forced-8a1"], [])
        await consumer.wait("ready", lambda: "ready" in consumer.text(task2))
        await consumer.host.stop_task(task2, 0.0)
        exited = await consumer.exited(task2)
        assert isinstance(exited, TaskExited) and exited.exit_code == 137
        assert pgrep("forced-8a1") == []


async def test_reading_stops_at_the_window_until_acknowledged_binary_intact(sshd: Sshd) -> None:
    """A log that is not written (a stuck disk) holds reading at the window; once acknowledged,
    the rest arrives, byte for byte (binary, NULs included)."""
    task = f"{UID}/0/0"
    window = 65536
    size = 400_000
    async with ssh_host(sshd, hold=True, ssh={"read_window_bytes": window}) as consumer:
        await up(consumer)
        host = consumer.host
        await host.start_task(task, "x", ["head", "-c", str(size), "/dev/urandom"], [])
        await consumer.wait(
            "a window's worth", lambda: len(consumer.output.get((task, "stdout"), b"")) >= window
        )
        stdout = sshd.home_state / task / "stdout"
        await consumer.wait("the command ended", (sshd.home_state / task / "exit").exists)
        polls = host.polls
        await consumer.wait("three more polls", lambda: host.polls >= polls + 3)
        assert len(consumer.output[(task, "stdout")]) == window  # nothing read beyond it
        expected = stdout.read_bytes()
        assert len(expected) == size
        consumer.hold = False
        host.ack_output(task, "stdout", window)
        exited = await consumer.exited(task)
        assert isinstance(exited, TaskExited) and exited.exit_code == 0
    assert bytes(consumer.output[(task, "stdout")]) == expected


def counter_script(count: int, delay: str = "0.01") -> list[str]:
    return [
        "sh",
        "-c",
        f'i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo "line $i"; sleep {delay}; done',
    ]


def assert_lines_exactly_once(text: str, count: int) -> None:
    assert text.splitlines() == [f"line {i}" for i in range(1, count + 1)]


async def test_sshd_killed_and_restarted_task_keeps_running_output_complete(sshd: Sshd) -> None:
    task = f"{UID}/0/0"
    count = 300
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        await consumer.host.start_task(task, "x", counter_script(count, "0.02"), [])
        await consumer.wait("some output", lambda: "line 5\n" in consumer.text(task))
        sshd.kill()  # the listener and every connection it serves
        await consumer.host.wait_state(SessionState.DOWN, timeout_s=WAIT)
        assert consumer.host.last_error
        with pytest.raises(Exception, match="not connected"):
            await consumer.host.start_task(f"{UID}/1/0", "x", ["true"], [])
        sshd.start()
        await up(consumer)
        reconciled = [e for e in consumer.events if isinstance(e, Reconciled)]
        assert len(reconciled) == 2
        exited = await consumer.exited(task)
    assert isinstance(exited, TaskExited) and exited.exit_code == 0
    assert_lines_exactly_once(consumer.text(task), count)


async def test_hung_host_goes_down_by_keepalive_and_comes_back(sshd: Sshd) -> None:
    task = f"{UID}/0/0"
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        await consumer.host.start_task(task, "x", counter_script(150, "0.02"), [])
        await consumer.wait("output", lambda: "line 3\n" in consumer.text(task))
        sshd.freeze(True)  # TCP stays open, nothing answers: only keepalives/timeouts tell
        try:
            await consumer.host.wait_state(SessionState.DOWN, timeout_s=WAIT)
            assert consumer.problems, "a hung host is reported"
        finally:
            sshd.freeze(False)
        await up(consumer)
        exited = await consumer.exited(task)
    assert isinstance(exited, TaskExited) and exited.exit_code == 0
    assert_lines_exactly_once(consumer.text(task), 150)


async def test_gateway_restart_adopts_running_and_collects_finished(sshd: Sshd) -> None:
    running, finished = f"{UID}/0/0", f"{UID}/1/0"
    async with ssh_host(sshd) as first:
        await up(first)
        await first.host.start_task(running, "x", counter_script(200, "0.02"), [])
        await first.host.start_task(finished, "x", ["sh", "-c", "echo done; exit 5"], [])
        await first.wait("output", lambda: "line 20\n" in first.text(running))
        await first.exited(finished)
    # Closing recorded the acknowledged offsets on the host (a killed gateway leaves the last
    # poll's: the log's offsets drop the overlap, see the e2e SIGKILL test).
    had = first.text(running)
    assert "line 20" in had
    # A new gateway process: nothing in memory, only what the host's state directory says.
    async with ssh_host(sshd) as second:
        await up(second)
        reconciled = next(e for e in second.events if isinstance(e, Reconciled))
        infos = {t.task_id: t for t in reconciled.device_tasks}
        assert infos[running].running
        assert running in reconciled.surviving
        exited = await second.exited(running)
        assert isinstance(exited, TaskExited) and exited.exit_code == 0
    # It read on from the offset recorded on the host, never before it: joined with what the
    # first gateway had, every line exactly once (the log writer drops any overlap by offset).
    resumed_at = second.starts[(running, "stdout")]
    assert 0 < resumed_at <= len(had.encode())
    combined = had.encode()[:resumed_at] + bytes(second.output[(running, "stdout")])
    assert_lines_exactly_once(combined.decode(), 200)


async def test_unacknowledged_output_is_read_again_after_restart(sshd: Sshd) -> None:
    task = f"{UID}/0/0"
    async with ssh_host(sshd, hold=True) as first:
        await up(first)
        await first.host.start_task(task, "x", ["sh", "-c", "echo one; echo two; exit 2"], [])
        await first.exited(task)
    # Nothing was acknowledged (the first gateway died before its disk write): all of it again,
    # and the exit status the command left behind.
    async with ssh_host(sshd) as second:
        await up(second)
        exited = await second.exited(task)
        assert isinstance(exited, TaskExited) and exited.exit_code == 2
        assert second.text(task) == "one\ntwo\n"
        await second.wait("state removed", lambda: not (sshd.home_state / UID).exists())


async def test_task_whose_supervisor_was_killed_is_lost(sshd: Sshd) -> None:
    task = f"{UID}/0/0"
    async with ssh_host(sshd) as consumer:
        await up(consumer)
        await consumer.host.start_task(task, "x", ["sleep", "1000"], [])
        supervisor = int((sshd.home_state / task / "sup").read_text())
        pgid = int((sshd.home_state / task / "pgid").read_text())
        os.kill(supervisor, 9)
        os.killpg(pgid, 9)
        lost = await consumer.exited(task)
    assert isinstance(lost, TaskLost) and "supervisor" in lost.reason


async def test_wrong_host_key_is_refused_with_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    keygen(other)
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    bad = tmp_path / "bad_known_hosts"
    bad.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    async with ssh_host(sshd, known_hosts=str(bad)) as consumer:
        await consumer.wait("a problem", lambda: consumer.problems)
        assert consumer.host.state is not SessionState.UP
    reason, message = consumer.problems[0]
    assert reason == REASON_HOST_KEY
    assert str(bad) in message and "host key not accepted" in message
    assert not any(isinstance(e, Reconciled) for e in consumer.events)


async def test_unknown_host_and_missing_known_hosts_are_refused(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    async with ssh_host(sshd, known_hosts=str(empty)) as consumer:
        await consumer.wait("a problem", lambda: consumer.problems)
    assert consumer.problems[0][0] == REASON_HOST_KEY
    async with ssh_host(sshd, known_hosts=str(tmp_path / "absent")) as consumer:
        await consumer.wait("a problem", lambda: consumer.problems)
    assert consumer.problems[0][0] == REASON_HOST_KEY
    assert "does not exist" in consumer.problems[0][1]


async def test_refused_authentication_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    keygen(stranger)
    async with ssh_host(sshd, key=str(stranger)) as consumer:
        await consumer.wait("a problem", lambda: consumer.problems)
    reason, message = consumer.problems[0]
    assert reason == REASON_AUTH
    assert "authentication refused" in message and "authorized_keys" in message
