"""`DeviceSession`: one device, over whatever transport currently reaches it.

The session owns one gateway-side `firmware_protocol.Link` for its whole life, so a device that
comes back (same boot) resumes where it left off: unacknowledged frames are resent, nothing is
lost or repeated. It composes the parts that do the work, one job each:

- `Connection` (connection.py): one transport's reader, writer and link timer, used once;
- `OutputLedger` (output_ledger.py, pure): which tasks' reports are taken, what output was
  delivered, what is held until the consumer persisted it;
- `reconcile` (reconcile.py, pure): the device's task list against what the session knew;
- `RequestRegistry` (requests.py, pure): requests in flight and the replies they expect;
- `TaskListPages` (task_list.py, pure): one task listing, page by page;
- `EventFanout` (fanout.py): events to subscriptions and the `on_event` callback.

What stays here: reconnect supervision (open, serve, back off, repeat), the state machine, the
handshake and the device's facts, and turning the link's events into calls on those parts.

Background tasks per session: the supervisor (`<label>:session`); per connection a reader and a
writer; per reconnect a short-lived reconcile. All are named, referenced and awaited on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import firmware_protocol as wire
from gateway.errors import (
    DeviceProtocolError,
    DeviceRejected,
    HandshakeError,
    LinkDown,
    LinkError,
    LinkTimeout,
    SessionClosed,
    TransportError,
    UnsupportedProtocolVersion,
    WireletError,
)
from gateway.link.connection import Connection
from gateway.link.events import (
    DeviceFacts,
    DeviceLoad,
    DeviceLogLine,
    SessionEvent,
    SessionStateChanged,
    SessionStats,
    TaskExited,
    TaskInfo,
    TaskStarted,
)
from gateway.link.exec_stream import ExecStream
from gateway.link.facts import device_facts, device_load
from gateway.link.fanout import EventFanout, EventSubscription
from gateway.link.output_ledger import Dropped, OutputLedger
from gateway.link.reconcile import Rehandshake, reconcile, with_rehandshakes
from gateway.link.requests import RequestRegistry
from gateway.link.retry import Backoff, RetryPolicy
from gateway.link.state import SessionState, check_transition
from gateway.link.task_list import TaskListPages
from gateway.transport.base import Transport, TransportOpener

__all__ = ["DeviceSession", "EventSubscription", "SessionConfig"]

_log = logging.getLogger(__name__)

# Device messages that are not replies: a probe (observe_only) never acknowledges them, so
# the device keeps them for the gateway that serves it.
_REPORT_TYPES = (
    wire.MessageType.TASK_STARTED,
    wire.MessageType.TASK_EXITED,
    wire.MessageType.TASK_OUTPUT,
    wire.MessageType.TASK_LIST,
    wire.MessageType.EXEC_RESULT,
    wire.MessageType.EXEC_OUTPUT,
    wire.MessageType.DEVICE_LOG,
    wire.MessageType.ERROR,
)

_Request = Callable[[int], wire.Message]  # builds a request from its request id


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timing of the session layer. Every wait on the device has a bound."""

    # Waiting for the device's reply to one request (start, list, exec), seconds.
    request_timeout: float = 5.0
    # From port open to handshake plus first task list, seconds. A hung device fails here.
    handshake_timeout: float = 5.0
    # Opening the port (pyserial's open runs in a thread), seconds.
    open_timeout: float = 5.0
    # Added to a stop's grace period while waiting for the exit report, seconds.
    stop_slack: float = 5.0
    backoff: RetryPolicy = field(default_factory=RetryPolicy)
    link: wire.LinkConfig = field(default_factory=wire.LinkConfig)
    # Persist-then-ack: TASK_OUTPUT is acknowledged to the device only once the consumer
    # calls `ack_output` for it (so the device keeps output until it is on disk), never
    # earlier, whatever the wait. False: on receipt, for tests that store nothing.
    hold_output: bool = True


class _DeviceLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the device (its id once known, the port before)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['device'] if self.extra else '?'}] {msg}", kwargs


class DeviceSession:
    """The gateway's connection to one device. Use as `async with DeviceSession(...) as s:`."""

    def __init__(
        self,
        opener: TransportOpener,
        *,
        label: str = "device",
        config: SessionConfig | None = None,
        on_event: Callable[[SessionEvent], None] | None = None,
        session_id: int | None = None,
        rng: random.Random | None = None,
        observe_only: bool = False,
    ) -> None:
        """`observe_only`: a probe (`wirelet devices`) that looks at a device without serving
        it. It acknowledges only the replies to its own requests, never output, exit reports
        or logs (whatever `hold_output` says), so the device keeps all of them for the gateway
        that serves it; it emits no task events."""
        self._opener = opener
        self.config = config or SessionConfig()
        self._rng = rng or random.Random()
        self._observe_only = observe_only
        if observe_only:
            hold: tuple[wire.MessageType, ...] = _REPORT_TYPES
        else:
            hold = (wire.MessageType.TASK_OUTPUT,) if self.config.hold_output else ()
        self._link = wire.Link(
            wire.Role.GATEWAY,
            self.config.link,
            session_id=session_id or self._rng.randrange(1, 1 << 32),
            hold=hold,
        )
        self._log = _DeviceLog(_log, {"device": label})
        self._label = label
        self._fanout = EventFanout(on_event, self._log)
        self._backoff = Backoff(self.config.backoff, self._rng)
        self._loop = asyncio.get_running_loop()

        self._state = SessionState.CONNECTING
        self._state_waiters: list[asyncio.Future[None]] = []
        self.stats = SessionStats()
        self.load: DeviceLoad | None = None  # last heartbeat load report
        self.facts: DeviceFacts | None = None
        self._handshake_error: HandshakeError | None = None
        self._last_error: BaseException | None = None

        self._connection: Connection | None = None
        self._link_up = asyncio.Event()  # the protocol link (not the session) is up
        self._lost: asyncio.Future[str] | None = None  # set when this connection must end

        self._requests: RequestRegistry[asyncio.Future[wire.Message]] = RequestRegistry(
            self._rng.randrange(1, 1 << 32)
        )
        self._exec_streams: dict[int, ExecStream] = {}  # streamed EXECs, by request id
        self._ledger = OutputLedger(self._loop.time)

        self._booted_as = 0  # boot id of the device at the last reconciliation
        self._supervisor: asyncio.Task[None] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> DeviceSession:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background; `wait_up()` to know when the device answers."""
        if self._supervisor is None and not self._closing:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"{self._label}:session")

    async def close(self) -> None:
        """Stop reconnecting, close the port, fail pending requests. Idempotent."""
        if self._state is SessionState.CLOSED:
            return
        self._closing = True
        for task in (self._reconciler, self._supervisor):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._set_state(SessionState.CLOSED, "closed by the gateway")
        self._fail_requests(SessionClosed(f"{self._label}: session closed"))
        self._fanout.close()

    async def wait_up(self, timeout_s: float | None = None) -> DeviceFacts:
        """Wait until the session is UP. Raises the handshake error if the device was refused
        (e.g. `UnsupportedProtocolVersion`), `LinkTimeout` if it does not come up in time."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._state is not SessionState.UP:
                    if self._state is SessionState.CLOSED:
                        raise SessionClosed(f"{self._label}: session closed")
                    if self._handshake_error is not None:
                        raise self._handshake_error
                    await self._state_change()
        except TimeoutError:
            last = f"; last error: {self._last_error}" if self._last_error else ""
            raise LinkTimeout(
                f"{self._label}: not up within {timeout_s} s (state {self._state.value}{last})"
            ) from None
        assert self.facts is not None
        return self.facts

    async def wait_state(
        self, *states: SessionState, timeout_s: float | None = None
    ) -> SessionState:
        """Wait until the session is in one of `states` (for tests and supervisors)."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._state not in states:
                    await self._state_change()
        except TimeoutError:
            want = ",".join(s.value for s in states)
            raise LinkTimeout(f"{self._label}: not {want} within {timeout_s} s") from None
        return self._state

    # --- public surface for the runtime layer ------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def label(self) -> str:
        return self._label

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    def subscribe(self) -> EventSubscription:
        """Every session event from now on, as an async iterator. Close it when done."""
        return self._fanout.subscribe()

    async def start_task(
        self,
        task_id: str,
        app: str,
        argv: Sequence[str] = (),
        env: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        *,
        working_dir: str = "",  # a device has no directories: ignored (SSH hosts use it)
    ) -> None:
        """Start `app` as `task_id`. Returns once the device confirmed; idempotent per task id.
        Raises `DeviceRejected` (unknown app, no free slot...), `LinkTimeout`, `LinkDown`."""
        pairs = tuple(env.items()) if isinstance(env, Mapping) else tuple(env)
        self._ledger.starting(task_id)
        try:
            await self._request(
                lambda rid: wire.StartTask(rid, task_id, app, tuple(argv), pairs),
                self.config.request_timeout,
            )
        except (LinkDown, LinkTimeout) as exc:
            if not isinstance(exc, SessionClosed):
                self._ledger.start_unanswered(task_id)
            raise
        self._ledger.started_here(task_id)

    async def stop_task(self, task_id: str, grace_s: float = 10.0) -> None:
        """Ask the task to exit, killed after `grace_s`. Returns once the device reported the
        exit (the `TaskExited` event carries code and reason)."""
        grace_ms = max(0, round(grace_s * 1000))
        await self._request(
            lambda rid: wire.StopTask(rid, task_id, grace_ms),
            grace_s + self.config.stop_slack,
        )

    async def list_tasks(self) -> list[TaskInfo]:
        """Every task the device reports, all pages of its task list."""
        return await self._fetch_task_list(self.config.request_timeout, check_up=True)

    def state_sizes(self) -> dict[str, int]:
        """Entries in each piece of per-device state: each stays bounded whatever the device
        sends (for tests and the soak)."""
        return self._ledger.sizes() | {
            "requests": len(self._requests),
            "exec_streams": len(self._exec_streams),
        }

    async def exec(
        self, argv: Sequence[str], timeout_s: float = 10.0, task_id: str = ""
    ) -> tuple[int, bytes, bytes]:
        """One-shot command on the device: (exit code, stdout, stderr)."""
        reply = await self._request(
            lambda rid: wire.Exec(rid, tuple(argv), round(timeout_s * 1000), task_id),
            timeout_s + self.config.request_timeout,
        )
        assert isinstance(reply, wire.ExecResult)
        return reply.exit_code, reply.stdout, reply.stderr

    def exec_stream(
        self,
        argv: Sequence[str],
        timeout_s: float = 10.0,
        task_id: str = "",
        limit_bytes: int | None = None,
    ) -> ExecStream:
        """One-shot command with its output as it arrives (EXEC_OUTPUT pieces, or all of a
        non-streaming device's single EXEC_RESULT): see gateway.link.exec_stream."""
        stream = ExecStream(limit_bytes)
        rids: list[int] = []

        def build(rid: int) -> wire.Exec:
            rids.append(rid)
            self._exec_streams[rid] = stream
            return wire.Exec(rid, tuple(argv), round(timeout_s * 1000), task_id, stream=True)

        async def run() -> wire.Message:
            try:
                return await self._request(build, timeout_s + self.config.request_timeout)
            finally:
                for rid in rids:
                    self._exec_streams.pop(rid, None)

        stream.drive(run())
        return stream

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        """The consumer persisted `task_id`'s `stream` up to `offset` (or has no use for it).

        Releases every TASK_OUTPUT frame of that stream ending at or before `offset`: the link
        acknowledges it to the device, which may then free it (persist-then-ack)."""
        released = self._ledger.persisted(task_id, stream, offset)
        for receipt in released:
            self._link.release(receipt)
        if released and self._connection is not None:
            self._connection.wake_writer()  # the ack leaves with the next write

    def unpersisted_bytes(self) -> int:
        """Output delivered to the consumer and not yet acknowledged as persisted."""
        return self._ledger.unpersisted_bytes()

    # --- state --------------------------------------------------------------------------------

    def _set_state(self, new: SessionState, reason: str = "") -> None:
        old = self._state
        if old is new:
            return
        check_transition(old, new)
        self._state = new
        self.stats.state = new
        if new is SessionState.UP:
            self.stats.connects += 1
        elif new is SessionState.DOWN and old is SessionState.UP:
            self.stats.disconnects += 1
        self._log.debug("link %s -> %s%s", old.value, new.value, f" ({reason})" if reason else "")
        self._wake_state_waiters()
        self._fanout.emit(SessionStateChanged(old, new, reason))

    async def _state_change(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._state_waiters.append(fut)
        try:
            await fut
        finally:
            with contextlib.suppress(ValueError):
                self._state_waiters.remove(fut)

    def _wake_state_waiters(self) -> None:
        waiters, self._state_waiters = self._state_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # --- supervisor: connect, serve, back off, repeat ----------------------------------------

    async def _supervise(self) -> None:
        while not self._closing:
            self._set_state(SessionState.CONNECTING)
            reason = ""
            try:
                async with asyncio.timeout(self.config.open_timeout):
                    transport = await self._opener()
            except (TransportError, TimeoutError, OSError) as exc:
                reason = f"open failed: {exc}"
                self._last_error = exc
            else:
                try:
                    reason = await self._serve(transport)
                finally:
                    await transport.close()
            self._set_state(SessionState.DOWN, reason)
            delay = self._backoff.next_delay()
            # The first failure after a good period is news; the repeats that follow are not.
            if self._backoff.failures == 1:
                self._log.warning("%s; reconnecting", reason)
            else:
                self._log.debug("%s; retrying in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    async def _serve(self, transport: Transport) -> str:
        """Run one connection until it ends; returns why it ended."""
        lost = self._lost = self._loop.create_future()
        connection = self._connection = Connection(
            self._link,
            transport,
            on_events=self._handle_events,
            stats=self.stats,
            log=self._log,
            label=self._label,
        )
        handshake: asyncio.Task[None] | None = None
        try:
            self._set_state(SessionState.HANDSHAKING, transport.description)
            self._kick_handshake(connection)
            handshake = asyncio.create_task(
                self._handshake(transport), name=f"{self._label}:handshake"
            )
            io = {connection.reader, connection.writer, lost}
            await asyncio.wait(io | {handshake}, return_when=asyncio.FIRST_COMPLETED)
            if handshake.done() and not handshake.cancelled() and handshake.exception() is None:
                self._backoff.reset()
                self._set_state(SessionState.UP, transport.description)
                await asyncio.wait(io, return_when=asyncio.FIRST_COMPLETED)
            return self._end_reason(connection, handshake)
        finally:
            self._link_up.clear()
            for task in (handshake, self._reconciler):
                if task is not None and not task.done():
                    task.cancel()
            await connection.close()
            # Their outcomes were read above (or do not matter once we are leaving).
            children = [t for t in (handshake, self._reconciler) if t is not None]
            await asyncio.gather(*children, return_exceptions=True)
            self._reconciler = None
            self._connection = None
            self._fail_requests(LinkDown(f"{self._label}: link down"))

    def _end_reason(self, connection: Connection, handshake: asyncio.Task[None] | None) -> str:
        """The first fatal cause wins."""
        assert self._lost is not None
        for task in (connection.reader, connection.writer, handshake):
            if task is not None and task.done() and not task.cancelled():
                exc = task.exception()
                if exc is not None:
                    self._last_error = exc
                    if not isinstance(exc, WireletError | OSError):
                        self._log.error("connection failed unexpectedly", exc_info=exc)
                    if isinstance(exc, HandshakeError):
                        self._handshake_error = exc
                        self._wake_state_waiters()
                    return str(exc)
        if self._lost.done():
            return self._lost.result()
        return "connection ended"

    def _connection_lost(self, reason: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    def _kick_handshake(self, connection: Connection) -> None:
        now = self._loop.time()
        if self._link.state is wire.LinkState.IDLE:
            self._handle_events(self._link.start(now))
        else:
            # The link keeps its state across reconnects (so the device can resume): drop what
            # the old connection left half-done and ask the device to introduce itself again.
            self._handle_events(self._link.request_handshake(now))
        connection.wake_writer()
        connection.arm_timer()

    async def _handshake(self, transport: Transport) -> None:
        """Link up, then one LIST_TASKS round trip: proof the device really answers."""
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                while True:
                    if self._handshake_error is not None:
                        raise self._handshake_error
                    await self._link_up.wait()
                    # Who it is is known now; the task list proves it really answers.
                    self._learn_facts(transport)
                    try:
                        tasks = await self._fetch_task_list(None)
                    except DeviceProtocolError:
                        raise
                    except LinkError:
                        continue  # dropped by a device reboot mid-handshake: wait for the new one
                    break
        except TimeoutError:
            raise LinkTimeout(
                f"no handshake from the device on {transport.description} within "
                f"{self.config.handshake_timeout} s"
            ) from None
        self._learn_facts(transport)
        self._reconcile(tasks)

    def _learn_facts(self, transport: Transport) -> None:
        hello, welcome = self._link.peer_hello, self._link.welcome
        assert hello is not None and welcome is not None
        previous = self.facts
        self.facts = device_facts(hello, welcome, transport.kind, transport.description)
        self._log.extra = {"device": hello.device_id}
        if previous is None:
            self._log.info(
                "up on %s: %s %s, %d slots, apps %s",
                transport.description,
                hello.firmware_name,
                hello.firmware_version,
                hello.task_slots,
                ",".join(hello.apps),
            )

    def _start_reconcile(self) -> None:
        if self._reconciler is not None and not self._reconciler.done():
            return

        async def reconcile_in_place() -> None:
            while True:
                try:
                    tasks = await self._fetch_task_list(self.config.request_timeout)
                    break
                except LinkTimeout as exc:
                    # Unanswered (a reply lost, a device busy after a reset): without the list
                    # nothing is adopted or settled, so ask again while the link lasts.
                    self._log.warning("reconcile failed: %s; asking again", exc)
                except DeviceProtocolError as exc:
                    # A device whose task list is broken cannot be reconciled in place: end
                    # the connection, so the node shows the link down with this reason and
                    # the handshake asks again (backing off) instead of trusting stale tasks.
                    self._log.warning("reconcile failed: %s; dropping the connection", exc)
                    self._last_error = exc
                    self._connection_lost(f"reconcile failed: {exc}")
                    return
                except LinkError as exc:
                    self._log.warning("reconcile failed: %s", exc)
                    return
            if self._connection is not None:
                self._learn_facts(self._connection.transport)
            self._reconcile(tasks)

        self._reconciler = asyncio.create_task(
            reconcile_in_place(), name=f"{self._label}:reconcile"
        )

    def _reconcile(self, device_tasks: list[TaskInfo]) -> None:
        """Compare what we believe runs with what the device reports; report the difference.

        The ledger takes the outcome before the events go out, so a consumer called back
        with them sees the session as it is after the reconciliation."""
        facts = self.facts
        rebooted = bool(self._booted_as and facts and facts.boot_id != self._booted_as)
        if facts is not None:
            self._booted_as = facts.boot_id
        outcome = reconcile(
            self._ledger.known(), device_tasks, rebooted, self._ledger.exit_reported
        )
        self._ledger.listed((t.task_id for t in device_tasks), outcome.gone, outcome.adopted)
        if outcome.lost or rebooted:
            self._log.warning(
                "reconciled%s: %d task(s) lost, %d survive",
                " after device reboot" if rebooted else "",
                len(outcome.lost),
                len(outcome.surviving),
            )
        for event in outcome.events:
            self._fanout.emit(event)

    # --- protocol events ------------------------------------------------------------------------

    def _handle_events(self, events: list[wire.Event]) -> None:
        for event in with_rehandshakes(events):
            if isinstance(event, wire.MessageReceived):
                self._on_message(event.message, event.receipt)
            elif isinstance(event, wire.LinkUp | wire.LinkLost | Rehandshake):
                self._on_link_change(event)
            elif isinstance(event, wire.PeerReset):
                self._on_peer_reset(event)
            elif isinstance(event, wire.HeartbeatAnswered):
                self.stats.heartbeats_sent += 1
                self.stats.rtt_last = event.rtt
                self.stats.rtt_smoothed = self._link.srtt
                if event.load is not None:
                    self.load = device_load(self.load, event.load, time.time_ns())
            elif isinstance(event, wire.Refused):
                self._on_refused(event)
            elif isinstance(event, wire.MessageRejected):
                self._log.warning(
                    "rejected a message of type 0x%02x: %s", event.msg_type, event.error
                )
        self._sync_stats()

    def _on_link_change(self, event: wire.LinkUp | wire.LinkLost | Rehandshake) -> None:
        if isinstance(event, wire.LinkUp):
            if not event.resumed:
                self._ledger.new_sequence_space()
            self._link_up.set()
            self._handshake_error = None
        elif isinstance(event, Rehandshake):
            # Stay connected and reconcile in place (the LinkUp follows in this batch).
            if self._state is SessionState.UP:
                self._start_reconcile()
        else:
            self._link_up.clear()
            if self._state is SessionState.UP:
                self._connection_lost(f"link lost: {event.reason}")

    def _sync_stats(self) -> None:
        """Copy the counters the protocol link and the ledger keep into `stats`."""
        link = self._link.stats
        self.stats.retransmits = link.retransmits
        self.stats.crc_errors = link.crc_errors
        self.stats.frames_in = link.frames_received
        self.stats.frames_out = link.frames_sent
        self.stats.bad_frames = link.framing_errors + link.undecodable
        self.stats.dropped_reports = self._ledger.dropped_reports
        self.stats.dropped_output_bytes = self._ledger.dropped_output_bytes
        if self._link.srtt is not None:
            self.stats.rtt_smoothed = self._link.srtt

    def _on_peer_reset(self, event: wire.PeerReset) -> None:
        # Requests meant for the previous boot are void; the device never saw them.
        request_ids = (getattr(m, "request_id", 0) for m in event.dropped)
        for fut in self._requests.waiters_of(request_ids):
            if not fut.done():
                fut.set_exception(LinkError(f"{self._label}: device rebooted before answering"))
        self._log.info("device rebooted (boot %08x -> %08x)", event.previous_id, event.new_id)

    def _on_refused(self, event: wire.Refused) -> None:
        if event.by_peer:
            error: HandshakeError = HandshakeError(f"device refused us: {event.reason}")
        else:
            error = UnsupportedProtocolVersion(
                f"device speaks protocol version(s) {list(event.peer_versions)}, this gateway "
                f"speaks {list(wire.SUPPORTED_VERSIONS)}"
            )
        self._handshake_error = error
        self._last_error = error
        self._log.error("handshake refused: %s", error)
        self._link_up.clear()
        self._wake_state_waiters()
        self._connection_lost(str(error))

    def _on_message(self, message: wire.Message, receipt: int | None) -> None:
        waiter = self._requests.waiter_for_reply(message)
        if self._observe_only:
            if waiter is not None and receipt is not None:
                self._link.release(receipt)  # ours: nobody else needs it
        elif isinstance(message, wire.TaskOutput):
            self._on_output(message, receipt)
        elif isinstance(message, wire.ExecOutput):
            exec_stream = self._exec_streams.get(message.request_id)
            if exec_stream is not None:  # else a command given up on: dropped
                exec_stream.feed(message)
        elif isinstance(message, wire.TaskStarted | wire.TaskExited):
            self._on_task_report(message, is_reply=waiter is not None)
        elif isinstance(message, wire.DeviceLog):
            self._fanout.emit(DeviceLogLine(message.level, message.text, message.uptime_ms))
        elif isinstance(message, wire.Error):
            self._log.debug(
                "device error %d for request %d: %s",
                message.code,
                message.request_id,
                message.message,
            )
        if waiter is not None and not waiter.done():
            if isinstance(message, wire.Error):
                waiter.set_exception(_rejection(message))
            else:
                waiter.set_result(message)

    def _on_task_report(self, message: wire.TaskStarted | wire.TaskExited, is_reply: bool) -> None:
        if isinstance(message, wire.TaskStarted):
            dropped = self._ledger.start_report(message.task_id, is_reply)
            if dropped is None:
                self._fanout.emit(TaskStarted(message.task_id))
            else:
                self._report_drop(dropped)
        elif self._ledger.exit_report(message.task_id):
            self._fanout.emit(
                TaskExited(
                    message.task_id,
                    message.exit_code,
                    message.reason,
                    message.stdout_end,
                    message.stderr_end,
                )
            )

    def _on_output(self, message: wire.TaskOutput, receipt: int | None) -> None:
        decision = self._ledger.output(
            message.task_id, int(message.stream), message.offset, message.data, receipt
        )
        if decision.release and receipt is not None:
            self._link.release(receipt)
        if decision.dropped is not None:
            self._report_drop(decision.dropped)
        if decision.deliver is not None:
            if decision.gap is not None:
                self._log.warning(
                    "%s %s: gap in output, %d..%d missing",
                    message.task_id,
                    decision.deliver.stream,
                    *decision.gap,
                )
            self._fanout.emit(decision.deliver)

    def _report_drop(self, dropped: Dropped) -> None:
        if dropped.warn:
            self._log.warning(
                "dropped %s for unknown task %r (not started here, not in the device's task "
                "list); %d report(s), %d output byte(s) dropped so far",
                dropped.what,
                dropped.task_id[:64],
                self._ledger.dropped_reports,
                self._ledger.dropped_output_bytes,
            )

    # --- requests -------------------------------------------------------------------------------

    def _check_up(self) -> None:
        if self._state is SessionState.CLOSED:
            raise SessionClosed(f"{self._label}: session closed")
        if self._state is not SessionState.UP:
            raise LinkDown(f"{self._label}: link is {self._state.value}")

    async def _fetch_task_list(
        self, timeout_s: float | None, *, check_up: bool = False
    ) -> list[TaskInfo]:
        """The device's whole task list, page by page (see `TaskListPages`). `check_up`: each
        page needs the session UP (a caller's request, not the handshake's own list)."""
        pages = TaskListPages(self._label)
        while True:
            if check_up:
                self._check_up()
            reply = await self._send_request(pages.request, timeout_s)
            assert isinstance(reply, wire.TaskList)
            listed = pages.add(reply)
            if listed is not None:
                return listed

    async def _request(self, build: _Request, timeout_s: float | None) -> wire.Message:
        self._check_up()
        return await self._send_request(build, timeout_s)

    async def _send_request(self, build: _Request, timeout_s: float | None) -> wire.Message:
        rid = self._requests.new_id()
        message = build(rid)
        # Register the waiter before sending: the reply can arrive before send() returns.
        fut: asyncio.Future[wire.Message] = self._loop.create_future()
        self._requests.add(message, fut)
        try:
            try:
                self._link.send(message, self._loop.time())
            except (wire.QueueFullError, wire.MessageTooLargeError) as exc:
                name = type(message).__name__
                raise LinkError(f"{self._label}: cannot send {name}: {exc}") from exc
            except wire.ProtocolError as exc:
                raise LinkError(f"{self._label}: {exc}") from exc
            if self._connection is not None:
                self._connection.wake_writer()
                self._connection.arm_timer()
            try:
                async with asyncio.timeout(timeout_s):
                    return await fut
            except TimeoutError:
                raise LinkTimeout(
                    f"{self._label}: no answer to {type(message).__name__} within {timeout_s} s"
                ) from None
        finally:
            self._requests.remove(rid)

    def _fail_requests(self, error: LinkError) -> None:
        for fut in self._requests.waiters():
            if not fut.done():
                fut.set_exception(error)


def _rejection(error: wire.Error) -> DeviceRejected:
    try:
        code = wire.ErrorCode(error.code).name
    except ValueError:
        code = f"CODE_{error.code}"
    return DeviceRejected(f"device refused: {code}: {error.message}", code=code)
