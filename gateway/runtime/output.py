"""Device output to disk, then to the device's acknowledgement: nothing is acknowledged earlier.

Two ways to disk, and both progress on their own, whatever the device or the API do next:

- `InstanceLog`: output of a container instance whose pod is known goes to its CRI log. One
  flush (offsets record, write, fdatasync) covers every chunk that arrived while the previous
  one ran; then every stream is acknowledged up to what that flush made durable. A slow or
  stuck disk holds the acknowledgement, so the device's window fills and it stops sending
  (back-pressure). A log that cannot be written (an error, not slowness) sends the instance's
  output to the spool from then on, with a Warning event, so it never blocks the device.
- `OutputSpooler`: output of one of our tasks whose pod is not known yet (a restarted gateway
  hears the device re-send it before the device's task list and the API say whose it is) goes
  to the store's `OutputSpool`, and is acknowledged once that is fdatasync'd. If it waited in
  memory instead, a window full of it would keep the device from sending the very task-list
  reply that lets the gateway place it. When the pod appears, the runtime replays the spool
  into the log (`InstanceLog.take_spooled`) and discards it once the log has it on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.logs.cri import Stream
from gateway.logs.spool import OutputSpool, SpooledOutput
from gateway.logs.writer import ContainerLogWriter
from gateway.runtime.task_ids import TaskName, parse_task_id

log = logging.getLogger(__name__)

# Retry of a spool flush that failed (disk full, I/O error): its output stays unacknowledged
# meanwhile, so the device holds it; the delay doubles up to the maximum.
SPOOL_RETRY_INITIAL_S = 0.5
SPOOL_RETRY_MAX_S = 30.0
# Output of tasks whose pod is not known spooled per device and gateway run at most: an honest
# device re-sends only what its small retained buffers hold, so only a device sending output
# for made-up task ids of our shape reaches it. Past it such output is dropped (acknowledged).
UNKNOWN_POD_SPOOL_LIMIT = 64 * 1024 * 1024


class AcksOutput(Protocol):
    """The device side: output of a task's stream is on disk up to `offset`."""

    def ack_output(self, task_id: str, stream: str, offset: int) -> None: ...


@dataclass(frozen=True, slots=True)
class _Chunk:
    output: SpooledOutput
    from_spool: bool  # already durable in the spool (replayed): never spooled again


class OutputSpooler:
    """Spools one device's output that has no log to go to, acknowledging it once durable."""

    def __init__(self, spool: OutputSpool, device: AcksOutput, *, label: str = "") -> None:
        self.spool = spool
        self.device = device
        self.label = label
        self._acks: dict[tuple[str, str], int] = {}  # (task id, stream) -> end, once durable
        self._flusher: asyncio.Task[None] | None = None
        self._retrying = False  # the flusher waits to retry a failed spool write
        self.failed_flushes = 0  # spool writes that failed (their output stayed unacknowledged)
        self.unknown_pod_bytes = 0  # spooled for pods not known (bounded)
        self.dropped_bytes = 0  # refused past UNKNOWN_POD_SPOOL_LIMIT

    def take(
        self, task_id: str, stream: str, offset: int, data: bytes, *, known: bool = False
    ) -> bool:
        """Spool output of one of our tasks; False for a task id this gateway did not make, or
        (unless `known`: its container's log failed) past the budget for unknown pods."""
        name = parse_task_id(task_id)
        if name is None:
            return False
        if not known:
            if self.unknown_pod_bytes + len(data) > UNKNOWN_POD_SPOOL_LIMIT:
                if not self.dropped_bytes:
                    log.warning(
                        "%s: over %d MiB of output for pods this gateway does not know; "
                        "dropping more (a device inventing task ids?)",
                        self.label,
                        UNKNOWN_POD_SPOOL_LIMIT >> 20,
                    )
                self.dropped_bytes += len(data)
                return False
            self.unknown_pod_bytes += len(data)
        self.spool.add(name.pod_uid, task_id, stream, offset, data)
        key = (task_id, stream)
        self._acks[key] = max(self._acks.get(key, 0), offset + len(data))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
            self._flusher.set_name(f"{self.label}:spool flush")
        return True

    async def _flush(self) -> None:
        delay = SPOOL_RETRY_INITIAL_S
        try:
            while self._acks:
                acks, self._acks = self._acks, {}
                try:
                    await self.spool.flush()
                except OSError as exc:
                    # Not on disk: not acknowledged. The device keeps the output meanwhile.
                    self.failed_flushes += 1
                    log.error(
                        "%s: cannot spool device output (%s); holding it, retry in %.1f s",
                        self.label,
                        exc,
                        delay,
                    )
                    for key, end in acks.items():
                        self._acks[key] = max(self._acks.get(key, 0), end)
                    self._retrying = True
                    try:
                        await asyncio.sleep(delay)
                    finally:
                        self._retrying = False
                    delay = min(delay * 2, SPOOL_RETRY_MAX_S)
                    continue
                delay = SPOOL_RETRY_INITIAL_S
                for (task_id, stream), end in acks.items():
                    self.device.ack_output(task_id, stream, end)
        finally:
            self._flusher = None

    async def close(self) -> None:
        """Wait for the flush in progress; one waiting to retry a failed disk is given up (its
        output stays unacknowledged, so the device still has it)."""
        task = self._flusher
        if task is not None:
            if self._retrying:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class InstanceLog:
    """One container instance's output: into its CRI log, acknowledged once on disk."""

    def __init__(
        self,
        name: TaskName,
        writer: ContainerLogWriter,
        device: AcksOutput,
        spooler: OutputSpooler,
        *,
        on_failure: Callable[[InstanceLog, OSError], None],
        label: str = "",
    ) -> None:
        self.name = name
        self.task_id = str(name)
        self.writer = writer
        self.device = device
        self.spooler = spooler
        self.on_failure = on_failure
        self.label = label
        # Device offsets handed to the writer, and those a completed flush made durable.
        self.ends: dict[str, int] = {"stdout": 0, "stderr": 0}
        self.persisted: dict[str, int] = {}
        self.failed: OSError | None = None
        self._unflushed: list[_Chunk] = []  # what the next flush makes durable, as received
        self._replayed: set[str] = set()  # spooled task ids the next flush makes redundant
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None

    def resume(self) -> None:
        """Continue a log a previous gateway process wrote: its offsets say what it holds, so
        output the device re-sends below them is not written twice."""
        self.ends.update(self.writer.recorded_offsets())

    def take(self, stream: str, offset: int, data: bytes) -> None:
        """Output received from the device; acknowledged once a flush made it durable."""
        self._take(SpooledOutput(stream, offset, data), from_spool=False)

    def take_spooled(self, uid: str, task_id: str) -> None:
        """Move what the spool holds for this instance into its log; the spool entry is
        discarded once the log has it on disk."""
        for output in self.spooler.spool.read(uid, task_id):
            self._take(output, from_spool=True)
        if self.failed is None:
            self._replayed.add(task_id)
            self._schedule()

    def _take(self, output: SpooledOutput, *, from_spool: bool) -> None:
        if self.failed is not None:
            if not from_spool:
                self._spool(output)
            return
        known = self.ends.get(output.stream, 0)
        if output.end > known:
            skip = max(known - output.offset, 0)  # the part the log already has
            data = output.data[skip:]
            self.writer.write(Stream(output.stream), data, end=output.end)
            chunk = SpooledOutput(output.stream, output.offset + skip, data)
            self._unflushed.append(_Chunk(chunk, from_spool))
            self.ends[output.stream] = output.end
        elif self.persisted.get(output.stream, 0) >= output.end and not from_spool:
            # A repeat of output already durable: acknowledge it again at once.
            self.device.ack_output(self.task_id, output.stream, self.persisted[output.stream])
            return
        self._schedule()

    def _schedule(self) -> None:
        self._dirty = True
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
            self._flusher.set_name(f"{self.label}:flush {self.task_id}")
        elif self._publisher is None and self.writer.followed:
            # A flush is in progress, most of it waiting for the disk's sync: what came
            # meanwhile is written now, so `kubectl logs -f` shows it without waiting for that
            # sync; the next flush makes it durable and acknowledges it. Only while someone
            # follows: otherwise the next flush writes it, and a flood costs no extra writes.
            self._publisher = asyncio.ensure_future(self._publish())
            self._publisher.set_name(f"{self.label}:publish {self.task_id}")

    async def _publish(self) -> None:
        try:
            await self.writer.publish()
        except OSError:
            pass  # the writer fails the next flush with it, which fails the log over
        finally:
            self._publisher = None

    async def _flush(self) -> None:
        """Coalesce: one flush covers every chunk that arrived while the previous one ran."""
        try:
            while self._dirty and self.failed is None:
                self._dirty = False
                ends = dict(self.ends)
                chunks, self._unflushed = self._unflushed, []
                replayed, self._replayed = self._replayed, set()
                try:
                    await self.writer.flush()
                except OSError as exc:
                    self._fail(exc, chunks)
                    return
                self.persisted = ends
                for stream, end in ends.items():
                    if end:
                        self.device.ack_output(self.task_id, stream, end)
                for task_id in replayed:
                    self.spooler.spool.discard(self.name.pod_uid, task_id)
        finally:
            self._flusher = None

    def _fail(self, error: OSError, chunks: list[_Chunk]) -> None:
        """The log cannot be written: this instance's output goes to the spool from now on."""
        self.failed = error
        lost_to_log = [*chunks, *self._unflushed]
        self._unflushed = []
        self.on_failure(self, error)
        for chunk in lost_to_log:
            if not chunk.from_spool:
                self._spool(chunk.output)

    def _spool(self, output: SpooledOutput) -> None:
        self.spooler.take(self.task_id, output.stream, output.offset, output.data, known=True)

    async def finish(self) -> None:
        """Everything received is durable (log or spool) and acknowledged; the file is closed."""
        while self._flusher is not None:
            await self._flusher
        if self._publisher is not None:
            await self._publisher
        if self.failed is None:
            try:
                await self.writer.close()
                return
            except OSError as exc:
                self._fail(exc, [])
        with contextlib.suppress(OSError):
            await self.writer.abandon()
