"""Which tasks' reports the session takes, what output it delivered, what it holds back.

Pure and clock-injected (no I/O, no event loop): the session feeds it what the device reports
and gets back what to deliver and which link receipts may be released, i.e. acknowledged to the
device, which may then free that output.

- Tasks: which task ids the session knows (started or adopted here, in the device's last task
  list, or recently exited, for their late output). Reports for other ids are taken only until
  the session's first task list, for a bounded number of ids; the rest is dropped and counted,
  so a broken or hostile device cannot grow the gateway's memory.
- Offsets: per task and stream, how far output was delivered to the consumer (repeats after a
  reconnect are trimmed) and how far the consumer persisted it.
- Held output (persist-then-ack): TASK_OUTPUT frames whose receipt is released only once the
  consumer persisted their stream up to their end (`persisted`). Nothing else releases them:
  no timer, no window pressure. A consumer that cannot keep up applies back-pressure (the
  device's window fills); the gateway's consumer persists output whatever the device or the API
  do next (gateway.runtime.output), so holding never waits on a later frame of the same device
  (PROTOCOL.md section 6).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import firmware_protocol as wire
from gateway.link.events import Stream, TaskOutput

# The wire's stream codes as the session's stream names.
STREAM_NAMES: Mapping[int, Stream] = {
    wire.OutputStream.STDOUT: "stdout",
    wire.OutputStream.STDERR: "stderr",
}
# Task ids whose exit was reported, remembered to swallow repeated exit reports.
EXITED_REMEMBERED = 256
# TASK_OUTPUT is taken only for task ids the session knows (started, adopted or listed, or
# recently exited, for their late output), and, until the session's first task list, for at
# most this many other ids (output kept for an earlier gateway process arrives before the task
# list). The rest is dropped and counted.
MAX_UNLISTED_OUTPUT_TASKS = 256
# STARTs sent whose request failed without an answer (link lost, timeout): the device may still
# get them (the link resends them on resume) and report the task; its reports are taken as from
# a known task until the next task list settles them. Only ids we sent, and this many at most.
MAX_UNANSWERED_STARTS = 256
# Non-running tasks whose late output is still tracked (offsets for repeats), oldest dropped.
MAX_TRAILING_TASKS = 256
# Dropped reports are logged once per task id (remembering this many ids), at most this many
# warnings per `DROP_WARN_WINDOW` seconds; the counters count every drop.
DROP_WARNED_REMEMBERED = 1024
DROP_WARNINGS_PER_WINDOW = 5
DROP_WARN_WINDOW = 60.0


@dataclass(slots=True)
class TaskRecord:
    running: bool = True
    # Started through this session. Otherwise (a previous gateway's task, adopted) its output
    # legitimately starts mid-stream, where the previous gateway stopped acknowledging.
    ours: bool = False
    delivered: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    persisted: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})


@dataclass(frozen=True, slots=True)
class Dropped:
    """A report for a task id that does not belong here. `warn`: log it (once per id, a few
    times a minute: a hostile device must not flood the log either)."""

    task_id: str
    what: str  # "output", "start report"
    warn: bool


@dataclass(frozen=True, slots=True)
class OutputDecision:
    """What to do with one TASK_OUTPUT frame."""

    deliver: TaskOutput | None = None  # the new bytes, for the consumer
    release: bool = False  # acknowledge the frame now (otherwise it is held, or had no receipt)
    gap: tuple[int, int] | None = None  # (delivered, offset): bytes missing from our own task
    dropped: Dropped | None = None


@dataclass(frozen=True, slots=True)
class _Held:
    task_id: str
    stream: str
    end: int
    receipt: int


class OutputLedger:
    """See the module docstring. `clock()`: seconds, monotonic (rate-limits drop warnings)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tasks: dict[str, TaskRecord] = {}
        self._exited: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._unanswered_starts: collections.OrderedDict[str, None] = collections.OrderedDict()
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
        self._held: collections.deque[_Held] = collections.deque()  # oldest first
        self.dropped_reports = 0
        self.dropped_output_bytes = 0

    # --- what the session knows --------------------------------------------------------------

    def known(self) -> dict[str, bool]:
        """Every tracked task id -> whether it runs (input to `reconcile`)."""
        return {task_id: record.running for task_id, record in self._tasks.items()}

    def exit_reported(self, task_id: str) -> bool:
        return task_id in self._exited

    def sizes(self) -> dict[str, int]:
        return {
            "tasks": len(self._tasks),
            "exited": len(self._exited),
            "unanswered_starts": len(self._unanswered_starts),
            "listed": len(self._listed),
            "trailing": len(self._trailing),
            "held": len(self._held),
            "drop_warned": len(self._drop_warned),
        }

    def unpersisted_bytes(self) -> int:
        """Output delivered to the consumer and not yet persisted by it."""
        return sum(
            t.delivered[s] - t.persisted[s] for t in self._tasks.values() for s in t.delivered
        )

    # --- task reports --------------------------------------------------------------------------

    def starting(self, task_id: str) -> None:
        """We are about to start `task_id`: an earlier task of that id no longer counts."""
        self._exited.pop(task_id, None)

    def started_here(self, task_id: str) -> None:
        """The device confirmed a start of ours (a finished record of the id is replaced)."""
        self._unanswered_starts.pop(task_id, None)
        self._running(task_id).ours = True

    def start_unanswered(self, task_id: str) -> None:
        """Our START for `task_id` got no answer: the device may run it yet (see
        MAX_UNANSWERED_STARTS); the oldest such id is forgotten first."""
        self._unanswered_starts[task_id] = None
        self._unanswered_starts.move_to_end(task_id)
        while len(self._unanswered_starts) > MAX_UNANSWERED_STARTS:
            self._unanswered_starts.popitem(last=False)

    def start_report(self, task_id: str, is_reply: bool) -> Dropped | None:
        """A TASK_STARTED arrived. Taken (recorded as ours) if it answers our request or the
        id is known, else like output for an unknown id; returns the drop if not taken."""
        known = task_id in self._tasks or task_id in self._listed
        # A START whose request failed unanswered, delivered after all: the task is ours.
        sent = task_id in self._unanswered_starts
        if is_reply or known or sent or self._accept_unknown():
            self.started_here(task_id)
            return None
        return self._drop(task_id, 0, "start report")

    def exit_report(self, task_id: str) -> bool:
        """A TASK_EXITED arrived: True if it is news (not a repeat of a reported exit)."""
        if task_id in self._exited:
            return False
        self.gone(task_id)
        return True

    def gone(self, task_id: str) -> None:
        """The task ended (exit reported, or reconciled away): forget it, remember the exit."""
        self._tasks.pop(task_id, None)
        self._trailing.pop(task_id, None)
        self._exited[task_id] = None
        while len(self._exited) > EXITED_REMEMBERED:
            self._exited.popitem(last=False)

    def listed(self, task_ids: Iterable[str], gone: Iterable[str], adopted: Iterable[str]) -> None:
        """The device's task list arrived and was reconciled (see `reconcile`)."""
        self._listed = frozenset(task_ids)
        self._awaiting_list = False
        # The list came after any START we sent: it shows whether each unanswered one ran.
        self._unanswered_starts.clear()
        for task_id in gone:
            self.gone(task_id)
        for task_id in adopted:
            self._tasks[task_id] = TaskRecord()  # a previous gateway's task

    # --- output --------------------------------------------------------------------------------

    def output(
        self, task_id: str, stream_code: int, offset: int, data: bytes, receipt: int | None
    ) -> OutputDecision:
        """A TASK_OUTPUT frame arrived (`receipt`: the link's handle while it holds the frame)."""
        stream = STREAM_NAMES.get(stream_code)
        record = self._record_for_output(task_id)
        if record is None:
            return OutputDecision(release=True, dropped=self._drop(task_id, len(data), "output"))
        if stream is None:
            return OutputDecision(release=True)
        delivered = record.delivered[stream]
        end = offset + len(data)
        if end <= delivered:
            # A repeat (e.g. replayed after a reconnect). Release it once what was delivered
            # up to `end` is persisted, not before: the ack is cumulative anyway.
            if receipt is None or record.persisted[stream] >= end:
                return OutputDecision(release=True)
            self._held.append(_Held(task_id, stream, end, receipt))
            return OutputDecision()
        gap = (delivered, offset) if offset > delivered and record.ours else None
        skip = max(0, delivered - offset)
        record.delivered[stream] = end
        if receipt is not None:
            self._held.append(_Held(task_id, stream, end, receipt))
        return OutputDecision(
            deliver=TaskOutput(task_id, stream, offset + skip, data[skip:]), gap=gap
        )

    def persisted(self, task_id: str, stream: str, offset: int) -> list[int]:
        """The consumer persisted `task_id`'s `stream` up to `offset` (or has no use for it):
        the receipts of every held frame of that stream ending at or before `offset`."""
        record = self._tasks.get(task_id)
        if record is not None and stream in record.persisted:
            record.persisted[stream] = max(record.persisted[stream], offset)
        released: list[int] = []
        kept: collections.deque[_Held] = collections.deque()
        for held in self._held:
            if held.task_id == task_id and held.stream == stream and held.end <= offset:
                released.append(held.receipt)
            else:
                kept.append(held)
        self._held = kept
        return released

    def new_sequence_space(self) -> None:
        """The link started afresh (not resumed): the receipts held so far are void."""
        self._held.clear()

    # --- bounds --------------------------------------------------------------------------------

    def _record_for_output(self, task_id: str) -> TaskRecord | None:
        """Where offsets of `task_id`'s output are tracked; None if its output does not belong
        here. Creating one is bounded: see MAX_UNLISTED_OUTPUT_TASKS."""
        record = self._tasks.get(task_id)
        if record is not None:
            return record
        if task_id in self._exited or task_id in self._listed:
            # Late output of a task that ended (re-sent after a reconnect, or queued behind
            # its task list entry): it still belongs in that task's log.
            record = self._tasks[task_id] = TaskRecord(running=False)
            self._trailing[task_id] = None
            self._trailing.move_to_end(task_id)
            while len(self._trailing) > MAX_TRAILING_TASKS:
                oldest, _ = self._trailing.popitem(last=False)
                stale = self._tasks.get(oldest)
                if stale is not None and not stale.running:
                    del self._tasks[oldest]
            return record
        if task_id in self._unanswered_starts or self._accept_unknown():
            # Re-sent before the task list: the reconcile tells whether it is still there.
            return self._tasks.setdefault(task_id, TaskRecord())
        return None

    def _accept_unknown(self) -> bool:
        """Take a report about an unknown task id only while the task list is awaited, and
        for a bounded number of ids."""
        if self._awaiting_list and self._unlisted < MAX_UNLISTED_OUTPUT_TASKS:
            self._unlisted += 1
            return True
        return False

    def _running(self, task_id: str) -> TaskRecord:
        """The record of a task that runs now (a finished one of the same id is replaced)."""
        record = self._tasks.get(task_id)
        if record is None or not record.running:
            record = self._tasks[task_id] = TaskRecord()
            self._trailing.pop(task_id, None)
        return record

    def _drop(self, task_id: str, size: int, what: str) -> Dropped:
        self.dropped_reports += 1
        self.dropped_output_bytes += size
        if task_id in self._drop_warned:
            return Dropped(task_id, what, warn=False)
        now = self._clock()
        while self._drop_warnings and now - self._drop_warnings[0] >= DROP_WARN_WINDOW:
            self._drop_warnings.popleft()
        if len(self._drop_warnings) >= DROP_WARNINGS_PER_WINDOW:
            return Dropped(task_id, what, warn=False)
        self._drop_warnings.append(now)
        self._drop_warned[task_id] = None
        while len(self._drop_warned) > DROP_WARNED_REMEMBERED:
            self._drop_warned.popitem(last=False)
        return Dropped(task_id, what, warn=True)
