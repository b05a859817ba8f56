"""`DeviceSession`: one device, over whatever transport currently reaches it.

The session owns one gateway-side `firmware_protocol.Link` for its whole life, so a device that
comes back (same boot) resumes where it left off: unacknowledged frames are resent, nothing is
lost or repeated. Around it the session adds what the sans-I/O link cannot do: open the port
(re-resolving where the device is now), pump bytes and timers, match replies to requests, keep
track of tasks, reconnect with backoff, and reconcile after every (re)connection.

Background tasks per session: the supervisor (`<label>:session`); per connection a reader and a
writer; per reconnect a short-lived reconcile. All are named, referenced and awaited on close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from firmware_protocol import (
    Error,
    ErrorCode,
    Exec,
    ExecOutput,
    ExecResult,
    HeartbeatAnswered,
    Link,
    LinkConfig,
    LinkLost,
    LinkUp,
    ListTasks,
    Load,
    Message,
    MessageReceived,
    MessageRejected,
    MessageTooLargeError,
    MessageType,
    PeerReset,
    ProtocolError,
    QueueFullError,
    Refused,
    Role,
    StartTask,
    StopTask,
    TaskList,
)
from firmware_protocol import LinkState as WireLinkState
from firmware_protocol import TaskExited as WireTaskExited
from firmware_protocol import TaskOutput as WireTaskOutput
from firmware_protocol import TaskStarted as WireTaskStarted
from firmware_protocol.constants import SUPPORTED_VERSIONS
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
from gateway.link.backoff import Backoff, BackoffPolicy
from gateway.link.events import (
    DeviceFacts,
    DeviceLoad,
    LinkFigures,
    LinkStateChanged,
    Reconciled,
    SessionEvent,
    Stream,
    TaskExited,
    TaskInfo,
    TaskLoadFigures,
    TaskLost,
    TaskOutput,
    TaskStarted,
)
from gateway.link.exec_stream import ExecStream
from gateway.link.state import LinkState, check_transition
from gateway.transport.base import Transport, TransportOpener

_log = logging.getLogger(__name__)

# Byte dumps are logged at this level, below DEBUG, so debug logs stay readable.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_STREAM_NAMES: dict[int, Stream] = {1: "stdout", 2: "stderr"}
# Task ids whose exit was reported, remembered to swallow repeated exit reports.
_EXITED_REMEMBERED = 256
# LIST_TASKS pages a device may take to list its tasks (PROTOCOL.md section 9, paging): far
# beyond any real task table, small enough that a device that never ends its list is caught.
MAX_LIST_PAGES = 1024
# Tasks one listing may hold, all pages together: bounds what a device can make us keep.
MAX_LISTED_TASKS = 4096
# Every piece of per-device state a device can make grow is bounded (a hostile or broken device
# must not exhaust the gateway's memory). TASK_OUTPUT is taken only for task ids the session
# knows (started, adopted or listed, or recently exited, for their late output), and, until the
# session's first task list, for at most this many other ids (output kept for an earlier
# gateway process arrives before the task list). The rest is dropped and counted.
MAX_UNLISTED_OUTPUT_TASKS = 256
# STARTs sent whose request failed without an answer (link lost, timeout): the device may still
# get them (the link resends them on resume) and report the task; its reports are taken as from
# a known task until the next task list settles them. Only ids we sent, and this many at most.
MAX_UNANSWERED_STARTS = 256
# Non-running tasks whose late output is still tracked (offsets for repeats), oldest dropped.
MAX_TRAILING_TASKS = 256
# Dropped output is logged once per task id (remembering this many ids), at most this many
# warnings per `_DROP_WARN_WINDOW` seconds; the figures count every drop.
_DROP_WARNED_REMEMBERED = 1024
_DROP_WARNINGS_PER_WINDOW = 5
_DROP_WARN_WINDOW = 60.0
# Device messages that are not replies: a probe (observe_only) never acknowledges them, so
# the device keeps them for the gateway that serves it.
_REPORT_TYPES = (
    MessageType.TASK_STARTED,
    MessageType.TASK_EXITED,
    MessageType.TASK_OUTPUT,
    MessageType.TASK_LIST,
    MessageType.EXEC_RESULT,
    MessageType.EXEC_OUTPUT,
    MessageType.DEVICE_LOG,
    MessageType.ERROR,
)


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
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    link: LinkConfig = field(default_factory=LinkConfig)
    # Persist-then-ack: TASK_OUTPUT is acknowledged to the device only once the consumer
    # calls `ack_output` for it (so the device keeps output until it is on disk), never
    # earlier, whatever the wait. False: on receipt, for tests that store nothing.
    hold_output: bool = True


class _DeviceLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the device (its id once known, the port before)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['device'] if self.extra else '?'}] {msg}", kwargs


@dataclass(slots=True)
class _KnownTask:
    running: bool = True
    # Started through this session. Otherwise (a previous gateway's task, adopted) its output
    # legitimately starts mid-stream, where the previous gateway stopped acknowledging.
    ours: bool = False
    delivered: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    persisted: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})


@dataclass(frozen=True, slots=True)
class _Held:
    """A TASK_OUTPUT frame the link holds until the consumer persisted its stream to `end`.

    Nothing releases it but `ack_output`: no timer, no window pressure. A consumer that cannot
    keep up applies back-pressure (the device's window fills); the gateway's consumer persists
    output whatever the device or the API do next (gateway.runtime.output), so the hold never
    waits on a later frame of the same device (PROTOCOL.md section 6)."""

    task_id: str
    stream: str
    end: int
    receipt: int


class EventSubscription:
    """An async iterator over session events from the moment it was created until close."""

    def __init__(self, unsubscribe: Callable[[EventSubscription], None]) -> None:
        self._queue: asyncio.Queue[SessionEvent | None] = asyncio.Queue()
        self._unsubscribe = unsubscribe
        self._closed = False  # no more events will be queued (the end marker is)

    def _put(self, event: SessionEvent | None) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[SessionEvent]:
        return self

    async def __anext__(self) -> SessionEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:  # the end marker queued by close()
            raise StopAsyncIteration
        return event

    async def get(self, timeout_s: float | None = None) -> SessionEvent:
        """Next event, with an optional bound (raises `LinkTimeout`)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.__anext__()
        except TimeoutError:
            raise LinkTimeout(f"no session event within {timeout_s} s") from None

    def close(self) -> None:
        """Stop receiving events; iteration ends after the ones already queued. Idempotent."""
        if self._closed:
            return
        self._put(None)
        self._closed = True
        self._unsubscribe(self)


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
            hold: tuple[MessageType, ...] = _REPORT_TYPES
        else:
            hold = (MessageType.TASK_OUTPUT,) if self.config.hold_output else ()
        self._link = Link(
            Role.GATEWAY,
            self.config.link,
            session_id=session_id or self._rng.randrange(1, 1 << 32),
            hold=hold,
        )
        self._log = _DeviceLog(_log, {"device": label})
        self._label = label
        self._on_event = on_event
        self._subscribers: list[EventSubscription] = []
        self._backoff = Backoff(self.config.backoff, self._rng)
        self._loop = asyncio.get_running_loop()

        self._state = LinkState.CONNECTING
        self._state_waiters: list[asyncio.Future[None]] = []
        self.figures = LinkFigures()
        self.load: DeviceLoad | None = None  # last heartbeat load report
        self.facts: DeviceFacts | None = None
        self._handshake_error: HandshakeError | None = None
        self._last_error: BaseException | None = None

        self._transport: Transport | None = None
        self._tx_wakeup = asyncio.Event()
        self._link_up = asyncio.Event()  # the protocol link (not the session) is up
        self._lost: asyncio.Future[str] | None = None  # set when this connection must end
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

        # Request ids start at a random point, so replies a device re-sends from an earlier
        # gateway session rarely carry an id in use; those that do are told apart by type.
        self._next_request_id = self._rng.randrange(1, 1 << 32)
        self._waiters: dict[int, asyncio.Future[Message]] = {}
        self._expected: dict[int, type[Message]] = {}  # request id -> its success reply type
        self._exec_streams: dict[int, ExecStream] = {}  # streamed EXECs, by request id
        self._tasks: dict[str, _KnownTask] = {}
        self._exited: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._unanswered_starts: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Bounded output bookkeeping (see MAX_UNLISTED_OUTPUT_TASKS).
        self._listed: frozenset[str] = frozenset()  # ids in the device's last task list
        # Until the first task list: output the device kept from an earlier gateway process
        # arrives before it, for tasks this session cannot know yet. Afterwards every task the
        # device can have output for was started, adopted or listed here (a rebooted device
        # has none kept), so anything else is dropped at once.
        self._awaiting_list = True
        self._unlisted = 0  # ids taken while awaiting the list
        self._trailing: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._drop_warned: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._drop_warnings: collections.deque[float] = collections.deque()
        # Output the link holds for us, oldest first: what `ack_output` must cover to release it.
        self._unreleased: collections.deque[_Held] = collections.deque()

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
        if self._state is LinkState.CLOSED:
            return
        self._closing = True
        for task in (self._reconciler, self._supervisor):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._set_state(LinkState.CLOSED, "closed by the gateway")
        self._fail_waiters(SessionClosed(f"{self._label}: session closed"))
        for sub in list(self._subscribers):
            sub.close()

    async def wait_up(self, timeout_s: float | None = None) -> DeviceFacts:
        """Wait until the session is UP. Raises the handshake error if the device was refused
        (e.g. `UnsupportedProtocolVersion`), `LinkTimeout` if it does not come up in time."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._state is not LinkState.UP:
                    if self._state is LinkState.CLOSED:
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

    async def wait_state(self, *states: LinkState, timeout_s: float | None = None) -> LinkState:
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
    def state(self) -> LinkState:
        return self._state

    @property
    def label(self) -> str:
        return self._label

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    def subscribe(self) -> EventSubscription:
        """Every session event from now on, as an async iterator. Close it when done."""
        sub = EventSubscription(self._unsubscribe)
        self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: EventSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

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
        self._exited.pop(task_id, None)
        try:
            await self._request(
                lambda rid: StartTask(rid, task_id, app, tuple(argv), pairs),
                self.config.request_timeout,
            )
        except (LinkDown, LinkTimeout) as exc:
            if not isinstance(exc, SessionClosed):
                self._start_unanswered(task_id)
            raise
        self._unanswered_starts.pop(task_id, None)
        self._known_running(task_id).ours = True

    async def stop_task(self, task_id: str, grace_s: float = 10.0) -> None:
        """Ask the task to exit, killed after `grace_s`. Returns once the device reported the
        exit (the `TaskExited` event carries code and reason)."""
        grace_ms = max(0, round(grace_s * 1000))
        await self._request(
            lambda rid: StopTask(rid, task_id, grace_ms),
            grace_s + self.config.stop_slack,
        )

    async def list_tasks(self) -> list[TaskInfo]:
        """Every task the device reports, all pages of its task list."""
        return await self._fetch_task_list(self._request, self.config.request_timeout)

    def state_sizes(self) -> dict[str, int]:
        """Entries in each piece of per-device state: each stays bounded whatever the device
        sends (for tests and the soak)."""
        return {
            "tasks": len(self._tasks),
            "exited": len(self._exited),
            "unanswered_starts": len(self._unanswered_starts),
            "listed": len(self._listed),
            "trailing": len(self._trailing),
            "unreleased": len(self._unreleased),
            "drop_warned": len(self._drop_warned),
            "waiters": len(self._waiters),
            "exec_streams": len(self._exec_streams),
        }

    async def exec(
        self, argv: Sequence[str], timeout_s: float = 10.0, task_id: str = ""
    ) -> tuple[int, bytes, bytes]:
        """One-shot command on the device: (exit code, stdout, stderr)."""
        reply = await self._request(
            lambda rid: Exec(rid, tuple(argv), round(timeout_s * 1000), task_id),
            timeout_s + self.config.request_timeout,
        )
        assert isinstance(reply, ExecResult)
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

        def build(rid: int) -> Exec:
            rids.append(rid)
            self._exec_streams[rid] = stream
            return Exec(rid, tuple(argv), round(timeout_s * 1000), task_id, stream=True)

        async def run() -> Message:
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
        known = self._tasks.get(task_id)
        if known is not None and stream in known.persisted:
            known.persisted[stream] = max(known.persisted[stream], offset)
        if not self._unreleased:
            return
        kept: collections.deque[_Held] = collections.deque()
        released = False
        for held in self._unreleased:
            if held.task_id == task_id and held.stream == stream and held.end <= offset:
                self._link.release(held.receipt)
                released = True
            else:
                kept.append(held)
        self._unreleased = kept
        if released:
            self._tx_wakeup.set()  # the ack leaves with the next write

    def unpersisted_bytes(self) -> int:
        """Output delivered to the consumer and not yet acknowledged as persisted."""
        return sum(
            t.delivered[s] - t.persisted[s] for t in self._tasks.values() for s in t.delivered
        )

    # --- state --------------------------------------------------------------------------------

    def _set_state(self, new: LinkState, reason: str = "") -> None:
        old = self._state
        if old is new:
            return
        check_transition(old, new)
        self._state = new
        self.figures.state = new
        if new is LinkState.UP:
            self.figures.connects += 1
        elif new is LinkState.DOWN and old is LinkState.UP:
            self.figures.disconnects += 1
        self._log.debug("link %s -> %s%s", old.value, new.value, f" ({reason})" if reason else "")
        waiters, self._state_waiters = self._state_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        self._emit(LinkStateChanged(old, new, reason))

    async def _state_change(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._state_waiters.append(fut)
        try:
            await fut
        finally:
            with contextlib.suppress(ValueError):
                self._state_waiters.remove(fut)

    def _emit(self, event: SessionEvent) -> None:
        for sub in self._subscribers:
            sub._put(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a consumer bug must not take the link down
                self._log.exception("event consumer failed on %s", type(event).__name__)

    # --- supervisor: connect, serve, back off, repeat ----------------------------------------

    async def _supervise(self) -> None:
        while not self._closing:
            self._set_state(LinkState.CONNECTING)
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
            self._set_state(LinkState.DOWN, reason)
            delay = self._backoff.next_delay()
            # The first failure after a good period is news; the repeats that follow are not.
            if self._backoff.failures == 1:
                self._log.warning("%s; reconnecting", reason)
            else:
                self._log.debug("%s; retrying in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    async def _serve(self, transport: Transport) -> str:
        """Run one connection until it ends; returns why it ended."""
        self._transport = transport
        self._lost = self._loop.create_future()
        self._tx_wakeup.clear()
        reader = asyncio.create_task(self._read_loop(transport), name=f"{self._label}:read")
        writer = asyncio.create_task(self._write_loop(transport), name=f"{self._label}:write")
        handshake: asyncio.Task[None] | None = None
        try:
            self._set_state(LinkState.HANDSHAKING, transport.description)
            self._kick_handshake()
            handshake = asyncio.create_task(
                self._handshake(transport), name=f"{self._label}:handshake"
            )
            watched: set[asyncio.Future[Any]] = {reader, writer, handshake, self._lost}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if handshake.done() and not handshake.cancelled() and handshake.exception() is None:
                self._backoff.reset()
                self._set_state(LinkState.UP, transport.description)
                watched = {reader, writer, self._lost}
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            return self._end_reason(reader, writer, handshake)
        finally:
            self._cancel_timer()
            self._link_up.clear()
            for task in (reader, writer, handshake, self._reconciler):
                if task is not None and not task.done():
                    task.cancel()
            # Their outcomes were read above (or do not matter once we are leaving).
            children = [t for t in (reader, writer, handshake, self._reconciler) if t is not None]
            await asyncio.gather(*children, return_exceptions=True)
            self._reconciler = None
            self._transport = None
            self._fail_waiters(LinkDown(f"{self._label}: link down"))

    def _end_reason(
        self,
        reader: asyncio.Task[None],
        writer: asyncio.Task[None],
        handshake: asyncio.Task[None] | None,
    ) -> str:
        """The first fatal cause wins."""
        assert self._lost is not None
        for task in (reader, writer, handshake):
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

    def _wake_state_waiters(self) -> None:
        waiters, self._state_waiters = self._state_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _connection_lost(self, reason: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    def _kick_handshake(self) -> None:
        now = self._loop.time()
        if self._link.state is WireLinkState.IDLE:
            self._handle_events(self._link.start(now))
        else:
            # The link keeps its state across reconnects (so the device can resume): drop what
            # the old connection left half-done and ask the device to introduce itself again.
            self._handle_events(self._link.request_handshake(now))
        self._tx_wakeup.set()
        self._arm_timer()

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
                        tasks = await self._fetch_task_list(self._request_raw, None)
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
        self.facts = DeviceFacts(
            device_id=hello.device_id,
            boot_id=hello.boot_id,
            firmware_name=hello.firmware_name,
            firmware_version=hello.firmware_version,
            apps=hello.apps,
            task_slots=hello.task_slots,
            memory_bytes=hello.memory_total,
            arch=hello.arch,
            max_frame=hello.max_frame,
            window=hello.window,
            protocol_version=welcome.version,
            session_id=welcome.session_id,
            transport=transport.kind,
            port=transport.description,
            vendor=hello.vendor,
            product=hello.product,
            serial=hello.serial,
        )
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

    def _reconcile(self, device_tasks: list[TaskInfo], *, rebooted: bool | None = None) -> None:
        """Compare what we believe runs with what the device reports; report the difference."""
        facts = self.facts
        if rebooted is None:
            rebooted = bool(self._booted_as and facts and facts.boot_id != self._booted_as)
        if facts is not None:
            self._booted_as = facts.boot_id
        on_device = {t.task_id: t for t in device_tasks}
        self._listed = frozenset(on_device)
        self._awaiting_list = False
        # The list came after any START we sent: it shows whether each unanswered one ran.
        self._unanswered_starts.clear()
        surviving: list[str] = []
        lost: list[str] = []
        for task_id, known in list(self._tasks.items()):
            if not known.running:
                continue
            info = on_device.get(task_id)
            if info is None:
                lost.append(task_id)
                reason = "device rebooted" if rebooted else "missing on the device after reconnect"
                self._task_gone(task_id)
                self._emit(TaskLost(task_id, reason))
            elif info.running:
                surviving.append(task_id)
            elif task_id not in self._exited:
                # It ended while we were away and its report did not reach us.
                self._task_gone(task_id)
                self._emit(
                    TaskExited(
                        task_id,
                        info.exit_code if info.exit_code is not None else -1,
                        "exited while disconnected",
                        info.stdout_end,
                        info.stderr_end,
                    )
                )
        for info in device_tasks:
            if info.running and info.task_id not in self._tasks:
                self._tasks[info.task_id] = _KnownTask()  # adopted: a previous gateway's task
        if lost or rebooted:
            self._log.warning(
                "reconciled%s: %d task(s) lost, %d survive",
                " after device reboot" if rebooted else "",
                len(lost),
                len(surviving),
            )
        self._emit(Reconciled(rebooted, tuple(surviving), tuple(lost), tuple(device_tasks)))

    def _task_gone(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)
        self._trailing.pop(task_id, None)
        self._exited[task_id] = None
        while len(self._exited) > _EXITED_REMEMBERED:
            self._exited.popitem(last=False)

    # --- I/O ------------------------------------------------------------------------------------

    async def _read_loop(self, transport: Transport) -> None:
        while True:
            data = await transport.read()
            self.figures.bytes_in += len(data)
            if self._log.isEnabledFor(TRACE):
                self._log.log(TRACE, "rx %s", data.hex(" "))
            self._handle_events(self._link.receive_data(data, self._loop.time()))
            if self._link.has_output:  # a PONG, say, needs no answer
                self._transmit()
            self._arm_timer()

    async def _write_loop(self, transport: Transport) -> None:
        while True:
            await self._tx_wakeup.wait()
            self._tx_wakeup.clear()
            data = self._link.data_to_send()
            if data:
                if self._log.isEnabledFor(TRACE):
                    self._log.log(TRACE, "tx %s", data.hex(" "))
                self.figures.bytes_out += len(data)
                await transport.write(data)

    def _transmit(self) -> None:
        """Send what the link has now if the transport takes it without waiting (heartbeats,
        acks: no writer task switch), else leave it to the write loop. Either way in order:
        the write loop hands what it drains to the transport before it waits."""
        transport = self._transport
        if transport is None or self._tx_wakeup.is_set() or not transport.ready_to_write:
            self._tx_wakeup.set()
            return
        data = self._link.data_to_send()
        if data:
            if self._log.isEnabledFor(TRACE):
                self._log.log(TRACE, "tx %s", data.hex(" "))
            self.figures.bytes_out += len(data)
            transport.write_nowait(data)

    def _arm_timer(self) -> None:
        deadline = self._link.next_deadline()
        if deadline is None:
            self._cancel_timer()
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # an earlier wake-up is armed; it recomputes when it fires
        self._cancel_timer()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._transport is None:
            return
        self._handle_events(self._link.on_timer(self._loop.time()))
        if self._link.has_output:
            self._transmit()
        self._arm_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    # --- protocol events ------------------------------------------------------------------------

    def _record_load(self, load: Load) -> None:
        """Keep the device's last load report; CPU time is integrated from the reported rate."""
        now = time.time_ns()
        previous = self.load
        core_ns = previous.cpu_core_ns if previous else 0
        if previous is not None:
            core_ns += previous.cpu_millicores * (now - previous.sampled_ns) // 1000
        self.load = DeviceLoad(
            sampled_ns=now,
            memory_bytes=load.mem_used,
            cpu_millicores=load.cpu_permille,
            cpu_core_ns=core_ns,
            tasks={t.task_id: TaskLoadFigures(t.cpu_permille, t.mem_used) for t in load.tasks},
        )

    def _handle_events(self, events: list[Any]) -> None:
        for index, event in enumerate(events):
            if isinstance(event, MessageReceived):
                self._on_message(event.message, event.receipt)
            elif isinstance(event, LinkUp):
                if not event.resumed:
                    self._unreleased.clear()  # a fresh sequence space: old receipts are void
                self._link_up.set()
                self._handshake_error = None
            elif isinstance(event, LinkLost):
                self._on_link_lost(event.reason, events[index + 1 :])
            elif isinstance(event, PeerReset):
                self._on_peer_reset(event)
            elif isinstance(event, HeartbeatAnswered):
                self.figures.heartbeats_sent += 1
                self.figures.rtt_last = event.rtt
                self.figures.rtt_smoothed = self._link.srtt
                if event.load is not None:
                    self._record_load(event.load)
            elif isinstance(event, Refused):
                self._on_refused(event)
            elif isinstance(event, MessageRejected):
                self._log.warning(
                    "rejected a message of type 0x%02x: %s", event.msg_type, event.error
                )
        stats = self._link.stats
        self.figures.retransmits = stats.retransmits
        self.figures.crc_errors = stats.crc_errors
        self.figures.frames_in = stats.frames_received
        self.figures.frames_out = stats.frames_sent
        self.figures.bad_frames = stats.framing_errors + stats.undecodable
        if self._link.srtt is not None:
            self.figures.rtt_smoothed = self._link.srtt

    def _on_link_lost(self, reason: str, rest: list[Any]) -> None:
        rehandshake = any(isinstance(e, LinkUp) for e in rest)
        if rehandshake:
            # The device introduced itself again on the same connection (it rebooted, or
            # restarted its link): stay connected and reconcile in place.
            if self._state is LinkState.UP:
                self._start_reconcile()
            return
        self._link_up.clear()
        if self._state is LinkState.UP:
            self._connection_lost(f"link lost: {reason}")

    def _on_peer_reset(self, event: PeerReset) -> None:
        # Requests meant for the previous boot are void; the device never saw them.
        request_ids = {getattr(m, "request_id", 0) for m in event.dropped}
        for rid in request_ids:
            fut = self._waiters.get(rid)
            if fut is not None and not fut.done():
                fut.set_exception(LinkError(f"{self._label}: device rebooted before answering"))
        self._log.info("device rebooted (boot %08x -> %08x)", event.previous_id, event.new_id)

    def _on_refused(self, event: Refused) -> None:
        if event.by_peer:
            error: HandshakeError = HandshakeError(f"device refused us: {event.reason}")
        else:
            error = UnsupportedProtocolVersion(
                f"device speaks protocol version(s) {list(event.peer_versions)}, this gateway "
                f"speaks {list(SUPPORTED_VERSIONS)}"
            )
        self._handshake_error = error
        self._last_error = error
        self._log.error("handshake refused: %s", error)
        self._link_up.clear()
        self._wake_state_waiters()
        self._connection_lost(str(error))

    def _start_reconcile(self) -> None:
        if self._reconciler is not None and not self._reconciler.done():
            return

        async def reconcile() -> None:
            try:
                tasks = await self._fetch_task_list(self._request_raw, self.config.request_timeout)
            except LinkError as exc:
                self._log.warning("reconcile failed: %s", exc)
                return
            if self._transport is not None:
                self._learn_facts(self._transport)
            self._reconcile(tasks)

        self._reconciler = asyncio.create_task(reconcile(), name=f"{self._label}:reconcile")

    def _on_message(self, message: Message, receipt: int | None) -> None:
        rid = getattr(message, "request_id", 0)
        # A reply to one of our requests, of the kind that request expects: a reply meant for
        # an earlier gateway session (re-sent after a restart) may carry a request id we use.
        expected = self._expected.get(rid) if rid else None
        is_reply = expected is not None and isinstance(message, (expected, Error))
        if self._observe_only:
            if is_reply and receipt is not None:
                self._link.release(receipt)  # ours: nobody else needs it
        elif isinstance(message, WireTaskOutput):
            self._on_output(message, receipt)
        elif isinstance(message, ExecOutput):
            exec_stream = self._exec_streams.get(rid)
            if exec_stream is not None:  # else a command given up on: dropped
                exec_stream.feed(message)
        elif isinstance(message, WireTaskStarted):
            task_id = message.task_id
            known = task_id in self._tasks or task_id in self._listed
            # A START whose request failed unanswered, delivered after all: the task is ours.
            sent = task_id in self._unanswered_starts
            if is_reply or known or sent or self._accept_unknown(task_id, "start report"):
                self._unanswered_starts.pop(task_id, None)
                self._known_running(task_id).ours = True
                self._emit(TaskStarted(task_id))
        elif isinstance(message, WireTaskExited):
            self._on_exited(message)
        elif isinstance(message, Error):
            self._log.debug(
                "device error %d for request %d: %s", message.code, rid, message.message
            )
        if is_reply:
            self._answer(rid, message)

    def _answer(self, rid: int, message: Message) -> None:
        """Complete the waiter of request `rid` with its reply (an ERROR raises there)."""
        fut = self._waiters.get(rid)
        if fut is not None and not fut.done():
            if isinstance(message, Error):
                fut.set_exception(_rejection(message))
            else:
                fut.set_result(message)

    def _on_output(self, message: WireTaskOutput, receipt: int | None) -> None:
        stream = _STREAM_NAMES.get(int(message.stream))
        known = self._output_tracker(message.task_id)
        if stream is None or known is None:
            if known is None:
                self._count_dropped(message.task_id, len(message.data))
            if receipt is not None:
                self._link.release(receipt)
            return
        delivered = known.delivered[stream]
        end = message.offset + len(message.data)
        if end <= delivered:
            # A repeat (e.g. replayed after a reconnect). Release it once what we emitted
            # earlier up to `end` is persisted, not before: the ack is cumulative anyway.
            if receipt is not None:
                if known.persisted[stream] >= end:
                    self._link.release(receipt)
                else:
                    self._hold(message.task_id, stream, end, receipt)
            return
        if message.offset > delivered and known.ours:
            self._log.warning(
                "%s %s: gap in output, %d..%d missing",
                message.task_id,
                stream,
                delivered,
                message.offset,
            )
        skip = max(0, delivered - message.offset)
        known.delivered[stream] = end
        if receipt is not None:
            self._hold(message.task_id, stream, end, receipt)
        self._emit(TaskOutput(message.task_id, stream, message.offset + skip, message.data[skip:]))

    def _output_tracker(self, task_id: str) -> _KnownTask | None:
        """Where offsets of `task_id`'s output are tracked; None if its output does not belong
        here (to be dropped). Creating one is bounded: see MAX_UNLISTED_OUTPUT_TASKS."""
        known = self._tasks.get(task_id)
        if known is not None:
            return known
        if task_id in self._exited or task_id in self._listed:
            # Late output of a task that ended (re-sent after a reconnect, or queued behind
            # its task list entry): it still belongs in that task's log.
            known = self._tasks[task_id] = _KnownTask(running=False)
            self._trailing[task_id] = None
            self._trailing.move_to_end(task_id)
            while len(self._trailing) > MAX_TRAILING_TASKS:
                oldest, _ = self._trailing.popitem(last=False)
                stale = self._tasks.get(oldest)
                if stale is not None and not stale.running:
                    del self._tasks[oldest]
            return known
        if task_id in self._unanswered_starts or self._accept_unknown(task_id, "output"):
            # Re-sent before the task list: the reconcile tells whether it is still there.
            return self._tasks.setdefault(task_id, _KnownTask())
        return None

    def _accept_unknown(self, task_id: str, what: str) -> bool:
        """Take a report about a task id we do not know only while the task list is awaited,
        and for a bounded number of ids; otherwise count it as dropped."""
        if self._awaiting_list and self._unlisted < MAX_UNLISTED_OUTPUT_TASKS:
            self._unlisted += 1
            return True
        if what != "output":
            self._count_dropped(task_id, 0, what)
        return False

    def _start_unanswered(self, task_id: str) -> None:
        """Our START for `task_id` got no answer: the device may run it yet (see
        MAX_UNANSWERED_STARTS); the oldest such id is forgotten first."""
        self._unanswered_starts[task_id] = None
        self._unanswered_starts.move_to_end(task_id)
        while len(self._unanswered_starts) > MAX_UNANSWERED_STARTS:
            self._unanswered_starts.popitem(last=False)

    def _known_running(self, task_id: str) -> _KnownTask:
        """The record of a task that runs now (a finished one of the same id is replaced)."""
        known = self._tasks.get(task_id)
        if known is None or not known.running:
            known = self._tasks[task_id] = _KnownTask()
            self._trailing.pop(task_id, None)
        return known

    def _count_dropped(self, task_id: str, size: int, what: str = "output") -> None:
        """Count a report for a task that does not belong here; warn once per task id, and
        only a few times a minute (a hostile device must not flood the log either)."""
        self.figures.dropped_reports += 1
        self.figures.dropped_output_bytes += size
        if task_id in self._drop_warned:
            return
        now = self._loop.time()
        while self._drop_warnings and now - self._drop_warnings[0] >= _DROP_WARN_WINDOW:
            self._drop_warnings.popleft()
        if len(self._drop_warnings) >= _DROP_WARNINGS_PER_WINDOW:
            return
        self._drop_warnings.append(now)
        self._drop_warned[task_id] = None
        while len(self._drop_warned) > _DROP_WARNED_REMEMBERED:
            self._drop_warned.popitem(last=False)
        self._log.warning(
            "dropped %s for unknown task %r (not started here, not in the device's task "
            "list); %d report(s), %d output byte(s) dropped so far",
            what,
            task_id[:64],
            self.figures.dropped_reports,
            self.figures.dropped_output_bytes,
        )

    def _hold(self, task_id: str, stream: str, end: int, receipt: int) -> None:
        self._unreleased.append(_Held(task_id, stream, end, receipt))

    def _on_exited(self, message: WireTaskExited) -> None:
        if message.task_id in self._exited:
            return  # a repeated report (a STOP for a task that had already exited)
        self._task_gone(message.task_id)
        self._emit(
            TaskExited(
                message.task_id,
                message.exit_code,
                message.reason,
                message.stdout_end,
                message.stderr_end,
            )
        )

    # --- requests -------------------------------------------------------------------------------

    async def _fetch_task_list(
        self,
        request: Callable[[Callable[[int], Message], float | None], Awaitable[Message]],
        timeout_s: float | None,
    ) -> list[TaskInfo]:
        """The device's whole task list, page by page (PROTOCOL.md section 9, paging).

        Raises `DeviceProtocolError` for a list that cannot be right (a next_cursor that does
        not grow, a page claiming more without tasks, too many pages or tasks): the device
        must not be able to keep us paging forever."""
        listed: dict[str, TaskInfo] = {}
        cursor = 0
        for _ in range(MAX_LIST_PAGES):
            reply = await request(functools.partial(ListTasks, cursor=cursor), timeout_s)
            assert isinstance(reply, TaskList)
            for task in reply.tasks:
                listed[task.task_id] = _task_info(task)
            if len(listed) > MAX_LISTED_TASKS:
                raise DeviceProtocolError(
                    f"{self._label}: the device lists more than {MAX_LISTED_TASKS} tasks; "
                    "refusing it (firmware bug?)"
                )
            following = reply.next_cursor
            if following is None:
                return list(listed.values())
            if following <= cursor or not reply.tasks:
                raise DeviceProtocolError(
                    f"{self._label}: broken task list: LIST_TASKS from cursor {cursor} was "
                    f"answered with {len(reply.tasks)} task(s) and next_cursor {following} "
                    "(a page with more to come must hold a task and a greater next_cursor; "
                    "PROTOCOL.md section 9); firmware bug"
                )
            cursor = following
        raise DeviceProtocolError(
            f"{self._label}: the device's task list did not end within {MAX_LIST_PAGES} pages "
            "(PROTOCOL.md section 9); firmware bug"
        )

    async def _request(self, build: Callable[[int], Message], timeout_s: float | None) -> Message:
        if self._state is LinkState.CLOSED:
            raise SessionClosed(f"{self._label}: session closed")
        if self._state is not LinkState.UP:
            raise LinkDown(f"{self._label}: link is {self._state.value}")
        return await self._request_raw(build, timeout_s)

    async def _request_raw(
        self, build: Callable[[int], Message], timeout_s: float | None
    ) -> Message:
        rid = self._new_request_id()
        message = build(rid)
        # Register the waiter before sending: the reply can arrive before send() returns.
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._waiters[rid] = fut
        self._expected[rid] = _REPLY_TO[type(message)]
        try:
            try:
                self._link.send(message, self._loop.time())
            except (QueueFullError, MessageTooLargeError) as exc:
                name = type(message).__name__
                raise LinkError(f"{self._label}: cannot send {name}: {exc}") from exc
            except ProtocolError as exc:
                raise LinkError(f"{self._label}: {exc}") from exc
            self._tx_wakeup.set()
            self._arm_timer()
            try:
                async with asyncio.timeout(timeout_s):
                    return await fut
            except TimeoutError:
                raise LinkTimeout(
                    f"{self._label}: no answer to {type(message).__name__} within {timeout_s} s"
                ) from None
        finally:
            self._waiters.pop(rid, None)
            self._expected.pop(rid, None)

    def _new_request_id(self) -> int:
        rid = self._next_request_id
        self._next_request_id = rid % 0xFFFFFFFF + 1  # u32, never 0
        return rid

    def _fail_waiters(self, error: LinkError) -> None:
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(error)


# The success reply of each request (ERROR is the other possible answer).
_REPLY_TO: dict[type[Message], type[Message]] = {
    StartTask: WireTaskStarted,
    StopTask: WireTaskExited,
    ListTasks: TaskList,
    Exec: ExecResult,
}


def _task_info(t: Any) -> TaskInfo:
    return TaskInfo(t.task_id, t.app, t.running, t.exit_code, t.stdout_end, t.stderr_end)


def _rejection(error: Error) -> DeviceRejected:
    try:
        code = ErrorCode(error.code).name
    except ValueError:
        code = f"CODE_{error.code}"
    return DeviceRejected(f"device refused: {code}: {error.message}", code=code)


def figures_as_dict(session: DeviceSession) -> dict[str, Any]:
    """Figures as plain data (for the CLI table and JSON output)."""
    return dataclasses.asdict(session.figures) | {"state": session.state.value}
