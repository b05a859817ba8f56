"""The device end of an emulated cable: the master side of a pseudo-terminal.

The slave side (`slave_path`, e.g. /dev/pts/7) is what the gateway opens, exactly as it would open
/dev/ttyACM0. We keep our own slave fd open for the pty's whole life: with no slave open, reads on
the master return EIO, and the raw termios settings we apply would be lost.

Optional baud pacing limits each direction to baud/10 bytes/s (8N1: ten bit times per byte), so
throughput figures resemble a real UART. Pacing does not own a timer; the owner asks
`next_deadline()` and calls `on_timer()` from its own single timer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import termios
import tty
from collections.abc import Callable

_log = logging.getLogger(__name__)

# Largest single read from the master; ptys move at most a few KiB per wakeup anyway.
READ_CHUNK = 65536
# A paced direction may send this long's worth of bytes at once, like a UART FIFO being filled.
# It also absorbs event-loop timer lateness: with a tiny burst every late wake-up would lose
# line time that a real FIFO-fed UART does not lose.
PACING_BURST_SECONDS = 0.01
PACING_BURST_MIN_BYTES = 64


class _TokenBucket:
    """Bytes allowed to pass at `rate` per second, with a small burst."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(float(PACING_BURST_MIN_BYTES), rate * PACING_BURST_SECONDS)
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> int:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def take(self, n: int) -> None:
        self.tokens -= n

    def time_until(self, n: int) -> float:
        """Seconds until `n` whole tokens are available (n is capped at capacity)."""
        need = min(float(n), self.capacity) - self.tokens
        return max(0.0, need / self.rate)


class PtyPort:
    """Non-blocking master fd with a write queue, EAGAIN handling and optional pacing."""

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        on_wake: Callable[[], None],
        *,
        baud: int | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_data = on_data
        self._on_wake = on_wake  # owner re-arms its timer: our deadline changed
        self._baud = baud
        self.master_fd = -1
        self._slave_fd = -1
        self.slave_path = ""
        self._out: collections.deque[memoryview] = collections.deque()
        self.out_buffered = 0
        self._reading = False
        self._writing = False
        self._tx_bucket: _TokenBucket | None = None
        self._rx_bucket: _TokenBucket | None = None
        self._rx_blocked_until: float | None = None
        self._tx_blocked_until: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def is_open(self) -> bool:
        return self.master_fd >= 0

    def open(self, avoid_name: str = "") -> None:
        """Open a new pty. `avoid_name`: a previous tty name we must not reuse (a replug)."""
        master, slave = os.openpty()
        if avoid_name and os.ttyname(slave) == avoid_name:
            # The kernel handed back the same pts number; take the next one instead.
            master2, slave2 = os.openpty()
            os.close(master)
            os.close(slave)
            master, slave = master2, slave2
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        self.master_fd, self._slave_fd = master, slave
        self.slave_path = os.ttyname(slave)
        self._out.clear()
        self.out_buffered = 0
        now = self._loop.time()
        if self._baud:
            self._tx_bucket = _TokenBucket(self._baud / 10, now)
            self._rx_bucket = _TokenBucket(self._baud / 10, now)
        self._rx_blocked_until = self._tx_blocked_until = None
        self._start_reading()

    def close(self) -> None:
        """Close both ends we hold: to the gateway this looks like a pulled cable (EIO/hangup)."""
        if self.master_fd < 0:
            return
        self._stop_reading()
        self._stop_writing()
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master_fd = self._slave_fd = -1
        self._out.clear()
        self.out_buffered = 0

    def write(self, data: bytes) -> None:
        """Queue bytes for the gateway; they leave as fast as the pty (and pacing) allow."""
        if self.master_fd < 0 or not data:
            return
        self._out.append(memoryview(data))
        self.out_buffered += len(data)
        if not self._writing and self._tx_blocked_until is None:
            self._flush()

    def flush_input(self) -> None:
        """Discard what the gateway wrote that we have not read yet (a device reset)."""
        if self._slave_fd >= 0:
            with contextlib.suppress(OSError):
                termios.tcflush(self._slave_fd, termios.TCOFLUSH)

    # --- timer integration -----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [t for t in (self._rx_blocked_until, self._tx_blocked_until) if t is not None]
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        if self._rx_blocked_until is not None and now >= self._rx_blocked_until:
            self._rx_blocked_until = None
            self._start_reading()
        if self._tx_blocked_until is not None and now >= self._tx_blocked_until:
            self._tx_blocked_until = None
            self._flush()

    # --- reading ---------------------------------------------------------------------------

    def stop_reading(self) -> None:
        """Leave the gateway's bytes in the tty for good (a device that never reads)."""
        self._stop_reading()
        self._rx_blocked_until = None

    def _start_reading(self) -> None:
        if not self._reading and self.master_fd >= 0:
            self._loop.add_reader(self.master_fd, self._read_ready)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.master_fd)
            self._reading = False

    def _read_ready(self) -> None:
        limit = READ_CHUNK
        if self._rx_bucket is not None:
            limit = min(limit, self._rx_bucket.refill(self._loop.time()))
            if limit <= 0:
                self._block_rx()
                return
        try:
            data = os.read(self.master_fd, limit)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO here means no slave is open; we hold one, so this is unexpected: stop quietly.
            _log.debug("%s: master read failed: %s", self.slave_path, exc)
            self._stop_reading()
            return
        if not data:
            return
        self.bytes_in += len(data)
        if self._rx_bucket is not None:
            self._rx_bucket.take(len(data))
            if self._rx_bucket.tokens < 1:
                self._block_rx()
        self._on_data(data)

    def _block_rx(self) -> None:
        assert self._rx_bucket is not None
        self._stop_reading()
        self._rx_blocked_until = self._loop.time() + self._rx_bucket.time_until(1)
        self._on_wake()

    # --- writing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        while self._out and self.master_fd >= 0:
            chunk = self._out[0]
            n = len(chunk)
            if self._tx_bucket is not None:
                allowed = self._tx_bucket.refill(self._loop.time())
                if allowed <= 0:
                    self._stop_writing()
                    wait = self._tx_bucket.time_until(min(n, 64))
                    self._tx_blocked_until = self._loop.time() + wait
                    self._on_wake()
                    return
                n = min(n, allowed)
            try:
                written = os.write(self.master_fd, chunk[:n])
            except BlockingIOError:
                written = 0
            except OSError as exc:
                # Not a full buffer but a broken pty: drop what is queued rather than spin.
                _log.debug("%s: master write failed: %s", self.slave_path, exc)
                self._out.clear()
                self.out_buffered = 0
                break
            if written <= 0:
                self._start_writing()  # wait for the gateway to drain the tty
                return
            self.bytes_out += written
            self.out_buffered -= written
            if self._tx_bucket is not None:
                self._tx_bucket.take(written)
            if written == len(chunk):
                self._out.popleft()
            else:
                self._out[0] = chunk[written:]
        self._stop_writing()

    def _start_writing(self) -> None:
        if not self._writing and self.master_fd >= 0:
            self._loop.add_writer(self.master_fd, self._flush)
            self._writing = True

    def _stop_writing(self) -> None:
        if self._writing:
            self._loop.remove_writer(self.master_fd)
            self._writing = False
