"""One streamed EXEC on a device: its output pieces as they arrive, then how it ended.

The session sends EXEC with `stream` set and hands every EXEC_OUTPUT of that request to
`ExecStream.feed`; the EXEC_RESULT (or the failure of the request) ends the stream. A device of
the protocol's first revision answers with one EXEC_RESULT holding all (maybe cut) output:
that is taken as the stream's only pieces. PROTOCOL.md section 9, "Streamed exec output".

What the stream keeps is bounded by `limit_bytes`: output beyond it is dropped (and said so in
`ExecEnd.limit_reached`), so a command that prints forever cannot exhaust the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

from firmware_protocol import ExecOutput, ExecResult, Message, OutputStream

_NAMES = {OutputStream.STDOUT: "stdout", OutputStream.STDERR: "stderr"}


@dataclass(frozen=True, slots=True)
class ExecChunk:
    stream: str  # "stdout" or "stderr"
    data: bytes


@dataclass(frozen=True, slots=True)
class ExecEnd:
    """How a command ended, once its stream is exhausted."""

    exit_code: int
    # A first-revision device cut the output to fit its single EXEC_RESULT frame.
    truncated: bool = False
    # More output than `limit_bytes` came: the rest was dropped by the gateway.
    limit_reached: bool = False
    # Bytes the device reported (stream ends, offsets) that never arrived.
    missing_bytes: int = 0


class ExecStream:
    """Async iterator of `ExecChunk`s; `end` is set once iteration stopped without an error.

    Iteration raises what failed the request (LinkTimeout, DeviceRejected, LinkDown...) after
    the pieces that came before it. `aclose()` gives up on the command (the device's late
    pieces and result are then dropped by the session) and waits until the request is withdrawn."""

    def __init__(self, limit_bytes: int | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.end: ExecEnd | None = None
        self._queue: asyncio.Queue[ExecChunk | None] = asyncio.Queue()
        self._received = {"stdout": 0, "stderr": 0}  # stream positions taken so far
        self._kept = 0  # bytes handed to the reader, all streams
        self._limit_reached = False
        self._missing = 0
        self._error: BaseException | None = None
        self._driver: asyncio.Future[Message] | None = None
        self._finished = False

    def drive(self, request: Awaitable[Message]) -> None:
        """Run the EXEC request (awaiting its EXEC_RESULT); its outcome ends the stream."""
        self._driver = asyncio.ensure_future(request)
        self._driver.add_done_callback(self._request_done)

    def feed(self, message: ExecOutput) -> None:
        """One EXEC_OUTPUT of this request: a repeat is skipped, a gap counted as missing."""
        name = _NAMES[message.stream]
        have = self._received[name]
        if message.offset > have:
            self._missing += message.offset - have
            have = message.offset
        data = message.data[have - message.offset :]
        if data:
            self._received[name] = have + len(data)
            self._keep(name, data)

    async def aclose(self) -> None:
        """Give up on the command if it still runs; returns once its request is withdrawn."""
        driver = self._driver
        if driver is not None and not driver.done():
            driver.cancel()
            await asyncio.wait({driver})  # never raises what ended the driver
        self._end(None)

    def __aiter__(self) -> AsyncIterator[ExecChunk]:
        return self

    async def __anext__(self) -> ExecChunk:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stays ended for a later call
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return item

    def _keep(self, name: str, data: bytes) -> None:
        if self._finished:
            return
        if self.limit_bytes is not None:
            room = self.limit_bytes - self._kept
            if len(data) > room:
                self._limit_reached = True
                data = data[: max(0, room)]
        if data:
            self._kept += len(data)
            self._queue.put_nowait(ExecChunk(name, data))

    def _request_done(self, driver: asyncio.Future[Message]) -> None:
        if driver.cancelled():
            self._end(None)
            return
        error = driver.exception()
        if error is not None:
            self._end(error)
            return
        result = driver.result()
        assert isinstance(result, ExecResult)
        truncated = result.truncated
        if result.stdout_end is None and result.stderr_end is None:
            # A single-frame answer (the device does not stream): its data is all there is.
            self._keep("stdout", result.stdout)
            self._keep("stderr", result.stderr)
        else:
            for name, end in (("stdout", result.stdout_end), ("stderr", result.stderr_end)):
                self._missing += max(0, (end or 0) - self._received[name])
        self.end = ExecEnd(result.exit_code, truncated, self._limit_reached, self._missing)
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._error = error
        self._queue.put_nowait(None)


@contextlib.asynccontextmanager
async def closing(stream: ExecStream) -> AsyncIterator[ExecStream]:
    """`async with closing(session.exec_stream(...)) as out:` gives up on the command when the
    reader leaves early (cancelled, client gone)."""
    try:
        yield stream
    finally:
        await stream.aclose()
