"""One SSH host as a device backend: the same operations and events as a device session.

The runtime talks to a device through `start_task`, `stop_task`, `list_tasks`, `ack_output` and
the session's events (link up/down, facts, task started/output/exited/lost, reconciliation).
`SshHost` offers exactly that over asyncssh, so pods, logs, node status, leases and the kubelet
API work on a host as on a device (gateway.device_node glues either to a node).

How a host differs from a device, and how the guarantees are kept:

- Tasks are commands started in their own session on the host (gateway.ssh.remote), writing
  output and exit status to a per-task state directory: they survive a dropped connection and a
  gateway restart, and are adopted by listing that directory.
- Output is read by offset, one poll command per interval for all tasks, at most
  `read_window_bytes` beyond what the logs acknowledged (a slow disk slows reading down).
  Offsets acknowledged are recorded on the host, so a restarted gateway reads on from there;
  the log's own offsets drop any repeat, so no line is lost or written twice.
- A task's exit is reported once its output has been read to the end; its directory is removed
  once that output is acknowledged (on disk in the log or the spool).
- Ready follows the connection: asyncssh keepalives, and a bound on every command.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncssh

from firmware_protocol import ExecResult, Message
from gateway.config_ssh import SshConfig, SshHostConfig
from gateway.errors import DeviceRejected, LinkDown, LinkTimeout
from gateway.link.events import (
    ANY_APP,
    DeviceFacts,
    DeviceLoad,
    Reconciled,
    SessionEvent,
    SessionStateChanged,
    Stream,
    TaskExited,
    TaskInfo,
    TaskLost,
    TaskOutput,
    TaskStarted,
)
from gateway.link.exec_stream import ExecStream
from gateway.link.fanout import EventFanout, EventSubscription
from gateway.link.retry import Backoff, RetryPolicy
from gateway.link.state import SessionState
from gateway.ssh import remote
from gateway.ssh.remote import ListedTask, ReadRequest
from gateway.ssh.shell import RemoteShell

log = logging.getLogger(__name__)

# Tasks on a host are limited by its resources, not by slots: the kubelet's default maxPods.
DEFAULT_PODS = 110
# Event reasons for a host that cannot be served (recorded on the node or the gateway host).
REASON_HOST_KEY = "SshHostKeyNotVerified"
REASON_AUTH = "SshAuthenticationFailed"
REASON_UNREACHABLE = "SshHostUnreachable"
REASON_SLOW = "SshHostSlow"
REASON_BROKEN = "SshHostUnsuitable"

T = TypeVar("T")
ProblemSink = Callable[[str, str], None]  # reason, message


class HostProblem(Exception):
    """Why a connection to the host ended or never started; `reason` is the event reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Task:
    """What the gateway knows of one task on the host."""

    read: dict[str, int]  # next offset to read, per stream
    acked: dict[str, int]  # durable in the gateway's logs, per stream
    saved: tuple[int, int] = (-1, -1)  # acked offsets last recorded on the host
    state: str = "run"
    exit_code: int | None = None
    sizes: tuple[int, int] = (0, 0)
    reported: bool = False  # its exit (or loss) went to the runtime
    listed: bool = False  # seen in a listing: from then on, missing from one means gone
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def info(self, task_id: str) -> TaskInfo:
        return TaskInfo(
            task_id,
            "",
            self.state == "run",
            self.exit_code,
            self.sizes[0],
            self.sizes[1],
        )

    def fully_read(self) -> bool:
        return (self.read["stdout"], self.read["stderr"]) >= self.sizes

    def fully_acked(self) -> bool:
        return self.acked["stdout"] >= self.sizes[0] and self.acked["stderr"] >= self.sizes[1]


class SshHost:
    """The gateway's connection to one SSH host, reconnecting with back-off until closed."""

    def __init__(
        self,
        host: SshHostConfig,
        config: SshConfig,
        *,
        on_problem: ProblemSink | None = None,
    ) -> None:
        self.host = host
        self.config = config
        self.on_problem = on_problem
        self._known_hosts = os.path.expanduser(host.known_hosts)
        self.facts: DeviceFacts | None = None
        self.load: DeviceLoad | None = None  # hosts report no load figures (yet): zeros
        self.last_error = ""
        self._state = SessionState.CONNECTING
        self._fanout = EventFanout(None, logging.LoggerAdapter(log))
        self._tasks: dict[str, _Task] = {}
        self._conn: asyncssh.SSHClientConnection | None = None
        self._shell: RemoteShell | None = None
        self._lost: asyncio.Future[str] | None = None  # set when this connection must end
        self._poke = asyncio.Event()
        self._backoff = Backoff(
            RetryPolicy(initial=config.reconnect_initial_s, maximum=config.reconnect_max_s)
        )
        self._boot_id = ""
        self.polls = 0  # poll round trips answered (a figure; tests count on it)
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._state_waiters: list[asyncio.Future[None]] = []
        # asyncssh logs every channel at INFO: a poll every 0.2 s would drown the gateway's log.
        ssh_log = logging.getLogger("asyncssh")
        if ssh_log.level == logging.NOTSET:
            ssh_log.setLevel(logging.WARNING)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.host.label

    @property
    def state(self) -> SessionState:
        return self._state

    def start(self) -> None:
        if self._supervisor is None and not self._closing:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.label}:ssh")

    async def close(self) -> None:
        """Disconnect; commands keep running on the host (the next gateway adopts them)."""
        if self._state is SessionState.CLOSED:
            return
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._save_acks()
        await self._disconnect()
        self._set_state(SessionState.CLOSED, "closed by the gateway")
        self._fanout.close()

    async def _save_acks(self) -> None:
        """Record the last acknowledged offsets on the host, so the next gateway re-reads
        less (on its own channel: the shell may have been cut mid-answer). Best effort."""
        conn = self._conn
        acks = self._unsaved_acks()
        if conn is None or not acks:
            return
        script = remote.poll_script(self.host.state_dir, acks=acks)
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            async with asyncio.timeout(min(self.config.command_timeout_s, 2.0)):
                await conn.run("sh -s", input=script.encode(), encoding=None)

    def _unsaved_acks(self) -> list[tuple[str, int, int]]:
        acks = []
        for task_id, task in self._tasks.items():
            saved = (task.acked["stdout"], task.acked["stderr"])
            if saved not in (task.saved, (0, 0)):
                acks.append((task_id, *saved))
        return acks

    async def wait_state(
        self, *states: SessionState, timeout_s: float | None = None
    ) -> SessionState:
        try:
            async with asyncio.timeout(timeout_s):
                while self._state not in states:
                    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._state_waiters.append(fut)
                    await fut
        except TimeoutError:
            want = ",".join(s.value for s in states)
            raise LinkTimeout(
                f"{self.label}: not {want} within {timeout_s} s (last error: {self.last_error})"
            ) from None
        return self._state

    def subscribe(self) -> EventSubscription:
        return self._fanout.subscribe()

    def _emit(self, event: SessionEvent) -> None:
        self._fanout.emit(event)

    def _set_state(self, new: SessionState, reason: str = "") -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        waiters, self._state_waiters = self._state_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        self._emit(SessionStateChanged(old, new, reason))

    # --- the runtime's operations ------------------------------------------------------------

    async def start_task(
        self,
        task_id: str,
        app: str,
        argv: Sequence[str] = (),
        env: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        *,
        working_dir: str = "",
    ) -> None:
        """Start the container's command on the host; idempotent per task id."""
        if not remote.task_id_ok(task_id):
            raise DeviceRejected(f"{self.label}: task id {task_id!r} is not one of ours")
        if not argv:
            raise DeviceRejected(
                "an SSH host runs the container's command and args, and this container has "
                "neither: set `command` (the image is not used on SSH hosts)"
            )
        pairs = tuple(env.items()) if isinstance(env, Mapping) else tuple(env)
        bad = [name for name, _ in pairs if not name or "=" in name]
        if bad:
            raise DeviceRejected(f"environment variable name {bad[0]!r} is not valid")
        script = remote.launch_script(self.host.state_dir, task_id, argv, pairs, working_dir)
        status, output = await self._script(script)
        if status != 0:
            detail = _text(output).strip() or f"exit status {status}"
            raise DeviceRejected(f"{self.label}: cannot start the command: {detail}")
        self._tasks.setdefault(task_id, _Task(_zero(), _zero()))
        self._emit(TaskStarted(task_id))
        self._poke.set()

    async def stop_task(self, task_id: str, grace_s: float = 10.0) -> None:
        """SIGTERM to the task's process group, SIGKILL after `grace_s`; returns once the host
        recorded the exit (or the bound of one command has passed after the SIGKILL)."""
        task = self._tasks.get(task_id)
        if task is not None and task.state != "run":
            return
        state_dir = self.host.state_dir
        if grace_s > 0:
            await self._script(remote.signal_script(state_dir, task_id, "TERM"))
            self._poke.set()
            if await self._ended(task_id, grace_s):
                return
        await self._script(remote.signal_script(state_dir, task_id, "KILL"))
        self._poke.set()
        await self._ended(task_id, self.config.command_timeout_s)

    async def _ended(self, task_id: str, within: float) -> bool:
        """Wait until a poll saw the task's exit; a task not listed yet is looked for again
        at every poll, so the wait holds for it too."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    task = self._tasks.get(task_id)
                    if task is not None:
                        await task.ended.wait()
                        return True
                    await asyncio.sleep(self.config.poll_interval_s)
        return False

    async def list_tasks(self) -> list[TaskInfo]:
        return [task.info(task_id) for task_id, task in self._tasks.items()]

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        task = self._tasks.get(task_id)
        if task is None or stream not in task.acked:
            return
        was_blocked = task.read[stream] - task.acked[stream] >= self.config.read_window_bytes
        task.acked[stream] = max(task.acked[stream], offset)
        if was_blocked or (task.reported and task.fully_acked()):
            self._poke.set()

    async def exec(
        self, argv: Sequence[str], timeout_s: float = 10.0, task_id: str = ""
    ) -> tuple[int, bytes, bytes]:
        """A one-shot command over a new channel: (exit status, stdout, stderr)."""
        conn = self._conn
        if conn is None or self._state is not SessionState.UP:
            raise LinkDown(f"{self.label}: not connected ({self.last_error or self._state.value})")
        if not argv:
            raise DeviceRejected("exec needs a command")  # an empty one would be a login shell
        command = " ".join(remote.q(part) for part in argv)
        try:
            async with asyncio.timeout(timeout_s):
                result = await conn.run(command, encoding=None)
        except TimeoutError:
            raise LinkTimeout(f"{self.label}: exec got no answer in {timeout_s:g} s") from None
        except (OSError, asyncssh.Error) as exc:
            raise LinkDown(f"{self.label}: exec failed: {exc}") from None
        return result.exit_status or 0, _bytes(result.stdout), _bytes(result.stderr)

    def exec_stream(
        self,
        argv: Sequence[str],
        timeout_s: float = 10.0,
        task_id: str = "",
        limit_bytes: int | None = None,
    ) -> ExecStream:
        """`exec` for the kubelet API's streaming exec: the output comes as one piece per stream
        once the command ended (as from a device that does not stream)."""
        stream = ExecStream(limit_bytes)

        async def run() -> Message:
            code, out, err = await self.exec(argv, timeout_s, task_id)
            return ExecResult(request_id=1, exit_code=code, stdout=out, stderr=err)

        stream.drive(run())
        return stream

    async def processes_alive(self, task_id: str) -> int:
        """How many processes of the task's process group still run (0 once it is gone)."""
        _, output = await self._script(remote.alive_script(self.host.state_dir, task_id))
        return int(_text(output).strip() or "0")

    # --- connection --------------------------------------------------------------------------

    def _shell_or_fail(self, connecting: bool) -> RemoteShell:
        shell = self._shell
        if shell is None or (self._state is not SessionState.UP and not connecting):
            raise LinkDown(f"{self.label}: not connected ({self.last_error or self._state.value})")
        return shell

    async def _script(self, script: str, *, connecting: bool = False) -> tuple[int, bytes]:
        """Run a script in the connection's shell: (exit status, stdout and stderr)."""
        shell = self._shell_or_fail(connecting)
        return await self._bounded(shell.run(script))

    async def _bounded(self, call: Awaitable[T]) -> T:
        limit = self.config.command_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            self._drop(f"the host did not answer a command within {limit:g} s (slow host?)")
            raise LinkTimeout(f"{self.label}: no answer within {limit:g} s") from None
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError) as exc:
            self._drop(f"connection lost: {exc}")
            raise LinkDown(f"{self.label}: connection lost: {exc}") from None

    def _drop(self, why: str) -> None:
        """The shell's framing is lost or the connection is gone: end this connection."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)
        if self._conn is not None:
            self._conn.abort()  # wakes every reader and writer on it at once

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()
        if conn is not None:
            conn.abort()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    async def _supervise(self) -> None:
        reported = ""
        while not self._closing:
            self._set_state(SessionState.CONNECTING)
            try:
                await self._connect()
                self._backoff.reset()
                await self._serve()
                problem = HostProblem(REASON_UNREACHABLE, f"{self.label}: connection closed")
            except HostProblem as exc:
                problem = exc
            except (LinkDown, LinkTimeout) as exc:
                reason = REASON_SLOW if isinstance(exc, LinkTimeout) else REASON_UNREACHABLE
                problem = HostProblem(reason, str(exc))
            except remote.PollAnswerError as exc:
                problem = HostProblem(REASON_BROKEN, f"{self.label}: {exc}")
            except Exception as exc:  # a bug or a surprise must not end this host for good
                log.exception("%s: unexpected failure", self.label)
                problem = HostProblem(REASON_BROKEN, f"{self.label}: unexpected failure: {exc}")
            finally:
                await self._disconnect()
            self.last_error = str(problem)
            self._set_state(SessionState.DOWN, str(problem))
            delay = self._backoff.next_delay()
            if str(problem) != reported:
                reported = str(problem)
                log.warning("%s; retrying with back-off", problem)
                if self.on_problem is not None:
                    self.on_problem(problem.reason, str(problem))
            else:
                log.debug("%s; retrying in %.2f s", problem, delay)
            await asyncio.sleep(delay)

    async def _connect(self) -> None:
        host = self.host
        where = f"{self.label}"
        known_hosts = self._known_hosts
        if not await asyncio.to_thread(os.path.exists, known_hosts):
            raise HostProblem(
                REASON_HOST_KEY,
                f"{where}: known_hosts file {known_hosts} does not exist; the host's key "
                f"cannot be verified (add it: ssh-keyscan -p {host.port} {host.address} >> "
                f"{known_hosts}, after checking its fingerprint)",
            )
        options: dict[str, object] = {}
        if host.key is not None:
            options["client_keys"] = [host.key]
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                self._conn = await asyncssh.connect(
                    host.address,
                    host.port,
                    username=host.user,
                    known_hosts=known_hosts,
                    keepalive_interval=self.config.keepalive_interval_s,
                    keepalive_count_max=self.config.keepalive_count,
                    config=None,
                    agent_path=None,
                    **options,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostProblem(
                REASON_HOST_KEY,
                f"{where}: host key not accepted ({exc}): it is unknown to or differs from "
                f"{known_hosts}; if the host was reinstalled, check its fingerprint and "
                f"update that file",
            ) from None
        except asyncssh.PermissionDenied as exc:
            raise HostProblem(
                REASON_AUTH,
                f"{where}: authentication refused for user {host.user} with key "
                f"{host.key or '(default keys)'} ({exc}); add its public key to the host's "
                f"~/.ssh/authorized_keys",
            ) from None
        except TimeoutError:
            raise HostProblem(
                REASON_SLOW,
                f"{where}: no SSH handshake within {self.config.connect_timeout_s:g} s",
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise HostProblem(REASON_UNREACHABLE, f"{where}: cannot connect: {exc}") from None
        except ValueError as exc:  # unreadable key or known_hosts file
            raise HostProblem(REASON_BROKEN, f"{where}: {exc}") from None

    async def _serve(self) -> None:
        """Probe, reconcile, then poll until the connection fails (raises why)."""
        self._set_state(SessionState.HANDSHAKING)
        assert self._conn is not None
        self._lost = asyncio.get_running_loop().create_future()
        self._shell = await self._bounded(RemoteShell.open(self._conn))
        _, probe = await self._script(remote.PROBE_SCRIPT, connecting=True)
        facts = remote.parse_probe(_text(probe))
        rebooted = bool(self._boot_id) and facts.boot_id != self._boot_id
        self._boot_id = facts.boot_id
        self.facts = DeviceFacts(
            device_id=self.host.host_id,
            boot_id=int(hashlib.sha256(facts.boot_id.encode()).hexdigest()[:8], 16),
            firmware_name=facts.os,
            firmware_version=facts.kernel,
            apps=(ANY_APP,),
            task_slots=DEFAULT_PODS,
            memory_bytes=facts.memory_bytes,
            arch=remote.k8s_arch(facts.machine),
            max_frame=0,
            window=0,
            protocol_version=0,
            session_id=0,
            transport="ssh",
            port=self.label,
            vendor="",
            product=facts.hostname,
            serial=self.host.address,
            os=facts.os,
            cpus=facts.cpus,
        )
        listed = await self._poll(initial=True)
        surviving = [t.task_id for t in listed if t.state == "run"]
        lost = [t.task_id for t in listed if t.state == "lost"]
        self._emit(
            Reconciled(
                rebooted,
                tuple(surviving),
                tuple(lost),
                tuple(self._tasks[t.task_id].info(t.task_id) for t in listed),
            )
        )
        self._set_state(SessionState.UP, f"ssh connected to {facts.hostname}")
        log.info(
            "%s: up (%s %s %s, %d cpus, %d MiB), %d task(s) on the host",
            self.label,
            facts.os,
            facts.kernel,
            facts.machine,
            facts.cpus,
            facts.memory_bytes >> 20,
            len(listed),
        )
        ending = self._lost
        while not ending.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_interval_s):
                    await self._poke.wait()
            self._poke.clear()
            await self._poll(initial=False)
        raise LinkDown(f"{self.label}: {ending.result()}")

    # --- polling -----------------------------------------------------------------------------

    async def _poll(self, *, initial: bool) -> list[ListedTask]:
        acks = self._unsaved_acks()
        removals = [t for t, task in self._tasks.items() if task.reported and task.fully_acked()]
        reads = [] if initial else self._reads()
        script = remote.poll_script(self.host.state_dir, acks=acks, removals=removals, reads=reads)
        shell = self._shell_or_fail(initial)
        listed, chunks = await self._bounded(shell.poll(script))
        self.polls += 1
        for task_id, out, err in acks:
            if task_id in self._tasks:
                self._tasks[task_id].saved = (out, err)
        for task_id in removals:
            self._tasks.pop(task_id, None)
        seen = self._take_listing(listed, removals)
        for chunk in chunks:
            reader = self._tasks.get(chunk.task_id)
            if reader is None or chunk.offset != reader.read.get(chunk.stream):
                continue  # cannot happen unless the directory was replaced meanwhile
            reader.read[chunk.stream] = chunk.offset + len(chunk.data)
            kind: Stream = "stdout" if chunk.stream == "stdout" else "stderr"
            self._emit(TaskOutput(chunk.task_id, kind, chunk.offset, chunk.data))
        if not initial:
            self._report_ends(seen)
        return listed

    def _reads(self) -> list[ReadRequest]:
        """What to read this poll: each stream from where reading got to, at most the read
        window beyond what the log has on disk (a stuck disk slows reading)."""
        reads = []
        window = self.config.read_window_bytes
        for task_id, task in self._tasks.items():
            if task.reported:
                continue
            for index, stream in enumerate(remote.STREAMS):
                limit = task.acked[stream] + window - task.read[stream]
                if limit > 0 and (task.state == "run" or task.sizes[index] > task.read[stream]):
                    reads.append(ReadRequest(task_id, stream, task.read[stream], limit))
        return reads

    def _take_listing(self, listed: list[ListedTask], removals: list[str]) -> set[str]:
        """Record what the host lists; returns the task ids it listed."""
        seen = set()
        for item in listed:
            seen.add(item.task_id)
            found = self._tasks.get(item.task_id)
            if found is None:
                if item.task_id in removals:
                    continue
                # Found on the host (a previous gateway's): read on from what it acknowledged.
                acked = {"stdout": item.acked[0], "stderr": item.acked[1]}
                found = self._tasks[item.task_id] = _Task(dict(acked), dict(acked), item.acked)
            found.listed = True
            found.state = item.state
            found.exit_code = item.exit_code
            found.sizes = item.sizes
            if item.state != "run":
                found.ended.set()
        return seen

    def _report_ends(self, seen: set[str]) -> None:
        for task_id, task in self._tasks.items():
            if task.reported:
                continue
            if task_id not in seen and task.listed:
                task.state = "lost"
                task.sizes = (task.read["stdout"], task.read["stderr"])
                task.reported = True
                task.ended.set()
                self._emit(TaskLost(task_id, "its state directory is gone from the host"))
            elif task.state != "run" and task.fully_read():
                task.reported = True
                if task.state == "exit" and task.exit_code is not None:
                    self._emit(TaskExited(task_id, task.exit_code, "exited", *task.sizes))
                else:
                    self._emit(
                        TaskLost(
                            task_id,
                            "its supervisor on the host is gone without an exit status "
                            "(host rebooted, or the process was killed)",
                        )
                    )


def _zero() -> dict[str, int]:
    return {"stdout": 0, "stderr": 0}


def _bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    return str(data or "").encode()


def _text(data: object) -> str:
    return _bytes(data).decode("utf-8", "replace")
