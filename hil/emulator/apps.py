"""The apps an emulated firmware offers. Each run is a tiny state machine, not an asyncio task.

With a thousand devices in one process, per-task coroutines and timers add up; instead the device
asks each run when it next wants to wake (`next_wake`) and calls `step()` from its single timer.
`step(now, room)` returns output (at most `room` bytes: the retained-output buffer is bounded, and
a full buffer blocks the app like a blocked UART write) and may finish the run.

Argv convention: the gateway sends the container's command+args as argv; a leading element equal
to the app's name is skipped, so both `["counter", "5", "10"]` and `["5", "10"]` work.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

STDOUT = 1
STDERR = 2

# Exit code of a task stopped by request (128 + SIGTERM, as a shell reports it).
STOPPED_EXIT_CODE = 143
# Exit code for bad arguments (as sysexits' EX_USAGE).
USAGE_EXIT_CODE = 64


@dataclass(frozen=True, slots=True)
class Output:
    stream: int
    data: bytes


@dataclass(slots=True)
class StepResult:
    output: list[Output]
    exit_code: int | None = None  # set when the run finished
    reboot: bool = False  # the app asks the whole device to reboot


class AppRun(abc.ABC):
    """One running instance of an app."""

    name = ""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        args = list(argv)
        if args and args[0] == self.name:
            args = args[1:]
        self.argv = list(argv)
        self.args = args
        self.env = dict(env)
        self.started_at = now
        self._stop_requested = False

    def next_wake(self) -> float | None:
        """When `step` should next run; None means only when output room frees up."""
        return self.started_at

    @abc.abstractmethod
    def step(self, now: float, room: int) -> StepResult: ...

    def request_stop(self) -> None:
        """A graceful stop: apps that handle it finish at their next step."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def _int_arg(self, index: int, default: int) -> int:
        try:
            return int(self.args[index])
        except IndexError:
            return default


def _usage(message: str) -> StepResult:
    return StepResult([Output(STDERR, f"usage: {message}\n".encode())], USAGE_EXIT_CODE)


class _OneShot(AppRun):
    """Apps that print once and exit (echo, exit)."""

    def step(self, now: float, room: int) -> StepResult:
        if self._stop_requested:
            return StepResult([], STOPPED_EXIT_CODE)
        return self.run_once()

    @abc.abstractmethod
    def run_once(self) -> StepResult: ...


class EchoApp(_OneShot):
    """Prints its argv (one line, JSON-ish repr) and its env (sorted KEY=VALUE lines); exits 0."""

    name = "echo"

    def run_once(self) -> StepResult:
        lines = ["argv: " + " ".join(self.argv)]
        lines += [f"{key}={value}" for key, value in sorted(self.env.items())]
        return StepResult([Output(STDOUT, ("\n".join(lines) + "\n").encode())], 0)


class ExitApp(_OneShot):
    """`exit CODE [MESSAGE]`: prints MESSAGE to stderr if given, exits with CODE."""

    name = "exit"

    def run_once(self) -> StepResult:
        try:
            code = self._int_arg(0, 0)
        except ValueError:
            return _usage("exit CODE [MESSAGE]")
        out = [Output(STDERR, (" ".join(self.args[1:]) + "\n").encode())] if self.args[1:] else []
        return StepResult(out, code & 0xFF)


class _Periodic(AppRun):
    """Prints a line every interval."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        super().__init__(argv, env, now)
        self.count = 0
        self.limit: int | None = None
        self.interval = 0.1
        self._next = now
        self._bad_usage = False

    def next_wake(self) -> float | None:
        return self._next

    def step(self, now: float, room: int) -> StepResult:
        if self._bad_usage:
            return _usage(self.usage)
        if self._stop_requested:
            return StepResult([], STOPPED_EXIT_CODE)
        out: list[Output] = []
        # Catch up on missed ticks (a slow event loop) without drifting.
        while now >= self._next and (self.limit is None or self.count < self.limit):
            line = self.line(self.count + 1).encode()
            if len(line) > room:
                self._next = now + self.interval  # blocked: retry later
                return StepResult(out)
            room -= len(line)
            self.count += 1
            out.append(Output(STDOUT, line))
            self._next += self.interval
        if self.limit is not None and self.count >= self.limit:
            return StepResult(out, 0)
        return StepResult(out)

    usage = ""

    @abc.abstractmethod
    def line(self, n: int) -> str: ...


class CounterApp(_Periodic):
    """`counter N INTERVAL_MS`: prints lines "1".."N" every INTERVAL_MS, then exits 0."""

    name = "counter"
    usage = "counter N INTERVAL_MS"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        super().__init__(argv, env, now)
        try:
            self.limit = self._int_arg(0, 10)
            self.interval = self._int_arg(1, 100) / 1000.0
        except ValueError:
            self._bad_usage = True

    def line(self, n: int) -> str:
        return f"{n}\n"


class ForeverApp(_Periodic):
    """`forever [INTERVAL_MS]`: prints "tick N" until stopped; exits with the stop code."""

    name = "forever"
    usage = "forever [INTERVAL_MS]"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        super().__init__(argv, env, now)
        try:
            self.interval = self._int_arg(0, 1000) / 1000.0
        except ValueError:
            self._bad_usage = True

    def line(self, n: int) -> str:
        return f"tick {n}\n"


FLOOD_LINE = 16  # bytes per flood line: 15 digits and a newline


def flood_bytes(start: int, length: int) -> bytes:
    """Bytes [start, start+length) of the flood pattern: line k is f"{k:015d}\\n"."""
    first = start // FLOOD_LINE
    last = (start + length + FLOOD_LINE - 1) // FLOOD_LINE
    block = "".join(f"{k:015d}\n" for k in range(first, last)).encode()
    offset = start - first * FLOOD_LINE
    return block[offset : offset + length]


class FloodApp(AppRun):
    """`flood BYTES`: writes BYTES of a checkable pattern as fast as the link drains it; exits 0."""

    name = "flood"
    # Produce at most this much per step so one device cannot hog the event loop.
    MAX_STEP = 16 * 1024

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        super().__init__(argv, env, now)
        try:
            self.total: int | None = self._int_arg(0, 1024 * 1024)
        except ValueError:
            self.total = None
        self.produced = 0

    def next_wake(self) -> float | None:
        return None if self.total is not None and self.produced < self.total else self.started_at

    def step(self, now: float, room: int) -> StepResult:
        if self.total is None:
            return _usage("flood BYTES")
        if self._stop_requested:
            return StepResult([], STOPPED_EXIT_CODE)
        n = min(room, self.total - self.produced, self.MAX_STEP)
        out = [Output(STDOUT, flood_bytes(self.produced, n))] if n > 0 else []
        self.produced += n
        return StepResult(out, 0 if self.produced >= self.total else None)


class RebootApp(AppRun):
    """`reboot [AFTER_MS]`: prints a line, then after AFTER_MS the whole device reboots."""

    name = "reboot"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], now: float) -> None:
        super().__init__(argv, env, now)
        try:
            self._at: float | None = now + self._int_arg(0, 50) / 1000.0
        except ValueError:
            self._at = None
        self._announced = False

    def next_wake(self) -> float | None:
        return self.started_at if not self._announced else self._at

    def step(self, now: float, room: int) -> StepResult:
        if self._at is None:
            return _usage("reboot [AFTER_MS]")
        if self._stop_requested:
            return StepResult([], STOPPED_EXIT_CODE)
        if not self._announced:
            self._announced = True
            return StepResult([Output(STDOUT, b"rebooting soon\n")])
        if now >= self._at:
            return StepResult([], reboot=True)
        return StepResult([])


AppFactory = Callable[[Sequence[str], Mapping[str, str], float], AppRun]

APPS: dict[str, AppFactory] = {
    app.name: app for app in (EchoApp, CounterApp, ForeverApp, ExitApp, FloodApp, RebootApp)
}
