"""Will a START_TASK fit the device? Checked before sending, as PROTOCOL.md section 11 asks.

A request over the protocol's field limits is refused by any device (ERROR MALFORMED), and one
larger than the device's `max_frame` would be dropped by its framing layer; a pod with more
containers than the device has task slots would wait for a slot forever. None can ever
succeed, so the gateway refuses it locally and the pod fails with the sizes and the limits.
"""

from __future__ import annotations

from collections.abc import Sequence

from firmware_protocol import StartTask
from firmware_protocol.constants import FRAME_OVERHEAD, MAX_ARG, MAX_ARGS, MAX_ENV
from gateway.runtime.model import PodSpecView

# The largest request id: the size check holds whatever id the session picks.
_LARGEST_REQUEST_ID = 0xFFFFFFFF


def _size(text: str) -> int:
    return len(text.encode())


def start_request_problem(
    task_id: str,
    app: str,
    argv: Sequence[str],
    env: Sequence[tuple[str, str]],
    max_frame: int | None,
) -> str | None:
    """Why this start can never be sent to a device with `max_frame`, or None if it fits."""
    argv_bytes = sum(_size(a) for a in argv)
    env_bytes = sum(_size(k) + _size(v) for k, v in env)
    sizes = (
        f"argv is {len(argv)} argument(s), {argv_bytes} bytes; "
        f"env is {len(env)} variable(s), {env_bytes} bytes"
    )
    if len(argv) > MAX_ARGS:
        return f"{sizes}; the protocol allows at most {MAX_ARGS} arguments"
    if len(env) > MAX_ENV:
        return f"{sizes}; the protocol allows at most {MAX_ENV} env variables"
    for index, arg in enumerate(argv):
        if _size(arg) > MAX_ARG:
            return (
                f"{sizes}; argument {index} is {_size(arg)} bytes, the protocol allows at most "
                f"{MAX_ARG} bytes per argument"
            )
    for key, value in env:
        if not key or _size(key) > MAX_ARG or _size(value) > MAX_ARG:
            return (
                f"{sizes}; env variable {key[:40]!r} has a {_size(key)}-byte name and a "
                f"{_size(value)}-byte value, the protocol allows 1 to {MAX_ARG} bytes for a "
                f"name and at most {MAX_ARG} for a value"
            )
    if max_frame is None:
        return None
    request = StartTask(_LARGEST_REQUEST_ID, task_id, app, tuple(argv), tuple(env))
    total = len(request.to_bytes()) + FRAME_OVERHEAD
    if total > max_frame:
        return (
            f"{sizes}; the start request needs {total} bytes and the device receives frames of "
            f"at most {max_frame} bytes (its max_frame)"
        )
    return None


def slots_problem(spec: PodSpecView, task_slots: int | None) -> str | None:
    """Each container is one task: a pod with more containers than the device has task
    slots can never run whole (the last starts would be refused NO_SLOTS forever)."""
    wanted = sum(1 for c in spec.containers if not c.ephemeral)
    if task_slots is None or wanted <= task_slots:
        return None
    return (
        f"the pod has {wanted} containers and the device runs at most {task_slots} "
        "tasks at once (its task slots); each container is one task"
    )
