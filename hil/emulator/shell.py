"""The emulated firmware's one-shot commands (the protocol's EXEC, what `kubectl exec` runs).

A command's whole result is computed at once: output, exit code and how long it "runs". The
device then sends the output (streamed or in one EXEC_RESULT) once that time has passed, or
answers ERROR TIMEOUT when it is longer than the EXEC's `timeout_ms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Lines `seq` may print: ~7 MB, enough to exceed any frame and any sane output limit.
MAX_SEQ_LINES = 1_000_000
# Seconds `sleep` may last.
MAX_SLEEP_S = 3600.0
NOT_FOUND_EXIT_CODE = 127
USAGE_EXIT_CODE = 64

COMMANDS = "echo ARGS..., uptime, seq [FIRST] LAST, fail CODE [TEXT...], sleep SECONDS"


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    duration_s: float = 0.0  # how long the command runs before it answers


def run_command(argv: Sequence[str], boot_id: int) -> CommandResult:
    """The result of `argv` on this firmware; an unknown command is "not found" (exit 127)."""
    cmd, *args = argv
    try:
        if cmd == "echo":
            return CommandResult(0, (" ".join(args) + "\n").encode())
        if cmd == "uptime":
            return CommandResult(0, f"boot {boot_id:08x}\n".encode())
        if cmd == "seq":
            return _seq(args)
        if cmd == "fail":
            # Output on stderr and a chosen exit code, for exit-code and stream tests.
            code = int(args[0]) if args else 1
            text = " ".join(args[1:]) or f"failed with {code}"
            return CommandResult(code, b"", (text + "\n").encode())
        if cmd == "sleep":
            seconds = float(args[0]) if args else 0.0
            if not 0 <= seconds <= MAX_SLEEP_S:
                raise ValueError(f"seconds must be within 0..{MAX_SLEEP_S:g}")
            return CommandResult(0, duration_s=seconds)
    except (ValueError, IndexError) as exc:
        return CommandResult(USAGE_EXIT_CODE, b"", f"{cmd}: {exc}\n".encode())
    return CommandResult(
        NOT_FOUND_EXIT_CODE, b"", f"{cmd}: not found (commands: {COMMANDS})\n".encode()
    )


def _seq(args: list[str]) -> CommandResult:
    """`seq LAST` or `seq FIRST LAST`: one number per line, as coreutils prints them."""
    if not 1 <= len(args) <= 2:
        raise ValueError("usage: seq [FIRST] LAST")
    first, last = (1, int(args[0])) if len(args) == 1 else (int(args[0]), int(args[1]))
    if last - first + 1 > MAX_SEQ_LINES:
        raise ValueError(f"at most {MAX_SEQ_LINES} lines")
    return CommandResult(0, "".join(f"{n}\n" for n in range(first, last + 1)).encode())
