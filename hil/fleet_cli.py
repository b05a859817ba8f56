"""What the command lines of the emulator (`python -m hil.emulator`) and of the QEMU boards
(`python -m hil.qemu`) share: `ctl` as the first word picks the control client; the server
runs a fleet until SIGINT or SIGTERM, printing where each device is and then `ready` (what
scripts and tests wait for); a control request's reply is printed as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

from hil.emulator.control import send_control

F = TypeVar("F")


def dispatch(
    argv: Sequence[str] | None,
    run_main: Callable[[Sequence[str]], int],
    ctl_main: Callable[[Sequence[str]], int],
) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "ctl":
        return ctl_main(args[1:])
    return run_main(args)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def serve_until_stopped(
    fleet: AbstractAsyncContextManager[F],
    where: Callable[[F], Iterable[tuple[str, str | None, Path]]],
) -> None:
    """Run `fleet` until SIGINT or SIGTERM; once up, print `DEVICE TTY LINK` per device (from
    `where`), then `ready`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet as running:
        for device_id, tty, link in where(running):
            print(f"{device_id} {tty} {link}")
        print("ready", flush=True)
        await stop.wait()


def run_server(
    serve: Callable[[], Coroutine[Any, Any, None]], errors: tuple[type[Exception], ...]
) -> int:
    """Exit code of running `serve()`: 0 when interrupted, 2 (message on stderr) on `errors`."""
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def control(directory: Path, request: dict[str, Any], *, timeout: float = 10.0) -> int:
    """Send one control request to a running fleet and print its reply; the exit code."""
    try:
        reply = send_control(directory, request, timeout=timeout)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1
