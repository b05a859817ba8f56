"""Frame budgets: how much a sender can put in one message so it fits the peer's ``max_frame``.

Every message a device sends must fit the frame the gateway declared (and every message the
gateway sends, the device's), whatever the number of tasks or the length of a text. These pure
functions give the sizes a sender needs instead of guessing; PROTOCOL.md section 11 states the
same arithmetic for firmware authors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

import msgpack

from .constants import FRAME_OVERHEAD, MAX_TASK_ID, MAX_TASKS_LISTED
from .messages import (
    DeviceLog,
    Error,
    ExecOutput,
    ExecResult,
    Load,
    Message,
    Pong,
    TaskInfo,
    TaskList,
    TaskOutput,
)

_U32_MAX: Final[int] = (1 << 32) - 1
_U64_MAX: Final[int] = (1 << 64) - 1

#: TASK_OUTPUT payload besides the task id and data, at worst: fixmap (1), key 1 (1), key 2 and
#: stream (2), key 3 and a uint64 offset (1 + 9), key 4 (1).
_OUTPUT_FIXED: Final[int] = 1 + 1 + 2 + 1 + 9 + 1
#: TASK_DATA payload besides the data, at worst: fixmap (1), key 1 and a handle (1 + 1), key 2
#: and stream (2), key 3 and a uint64 offset (1 + 9), key 4 (1).
_TASK_DATA_FIXED: Final[int] = 1 + 2 + 2 + 1 + 9 + 1
#: What binding a handle adds to a TASK_OUTPUT: key 5 and the handle.
HANDLE_BINDING_SIZE: Final[int] = 2
#: TASK_LIST envelope at worst: frame header and CRC, fixmap (1), key 0 and a uint32 request id
#: (1 + 5), key 1 and an array16 header (1 + 3), key 2 and a uint32 next_cursor (1 + 5).
TASK_LIST_ENVELOPE: Final[int] = FRAME_OVERHEAD + 1 + 6 + 4 + 6
#: The largest TaskInfo entry: 48-byte task id, 32-byte app, int64 exit code, two uint64 ends.
MAX_TASK_INFO_SIZE: Final[int] = 119


def uint_size(value: int) -> int:
    """Bytes msgpack takes for a non-negative integer in its smallest encoding."""
    if value < 0x80:
        return 1
    if value <= 0xFF:
        return 2
    if value <= 0xFFFF:
        return 3
    if value <= _U32_MAX:
        return 5
    return 9


def str_header_size(length: int) -> int:
    """Bytes of the msgpack str header for `length` bytes of UTF-8."""
    return 1 if length < 32 else 2 if length <= 0xFF else 3 if length <= 0xFFFF else 5


def bin_header_size(length: int) -> int:
    """Bytes of the msgpack bin header for `length` bytes."""
    return 2 if length <= 0xFF else 3 if length <= 0xFFFF else 5


def max_output_data(max_frame: int, task_id_len: int, *, offset: int = _U64_MAX) -> int:
    """Largest TASK_OUTPUT ``data`` (bytes) that fits a frame of `max_frame` bytes for a task
    id of `task_id_len` UTF-8 bytes, at stream position `offset`.

    The default offset is the largest possible, so one chunk size stays valid for the whole
    stream; pass the real offset to squeeze a few more bytes into early frames. Every
    `max_frame` from MIN_FRAME up leaves room for at least one byte with any task id."""
    if not 0 < task_id_len <= MAX_TASK_ID:
        raise ValueError(f"task id length {task_id_len} outside 1..{MAX_TASK_ID}")
    fixed = _OUTPUT_FIXED - 9 + uint_size(offset) + str_header_size(task_id_len) + task_id_len
    room = max_frame - FRAME_OVERHEAD - fixed  # data plus its bin header
    if room - 2 <= 0xFF:
        return max(0, room - 2)  # bin8
    # bin16 costs one byte more, but never below what bin8 already allows (255 bytes).
    return max(0xFF, room - 3)


#: EXEC_OUTPUT payload besides the data, at worst: fixmap (1), key 0 and a uint32 request id
#: (1 + 5), key 1 and stream (2), key 2 and a uint64 offset (1 + 9), key 3 (1).
_EXEC_OUTPUT_FIXED: Final[int] = 1 + 6 + 2 + 10 + 1


def max_exec_output_data(
    max_frame: int, *, request_id: int = _U32_MAX, offset: int = _U64_MAX
) -> int:
    """Largest EXEC_OUTPUT ``data`` (bytes) that fits a frame of `max_frame` bytes.

    The defaults are the largest request id and offset, so one chunk size holds for the whole
    command; pass the real ones to squeeze a few more bytes into a frame."""
    fixed = _EXEC_OUTPUT_FIXED - 5 + uint_size(request_id) - 9 + uint_size(offset)
    room = max_frame - FRAME_OVERHEAD - fixed  # data plus its bin header
    if room - 2 <= 0xFF:
        return max(0, room - 2)  # bin8
    return max(0xFF, room - 3)


def task_info_size(info: TaskInfo) -> int:
    """Encoded size of one TaskInfo entry (exact)."""
    return len(msgpack.packb(info.to_wire(), use_bin_type=True))


def task_infos_that_fit(max_frame: int, infos: Sequence[TaskInfo]) -> int:
    """How many of `infos`, from the first, fit one TASK_LIST in a frame of `max_frame` bytes
    (counting the envelope at its worst, with a next_cursor). At least one whenever `infos`
    is not empty and `max_frame` >= MIN_FRAME, so paging always makes progress."""
    room = max_frame - TASK_LIST_ENVELOPE
    count = 0
    for info in infos[:MAX_TASKS_LISTED]:
        room -= task_info_size(info)
        if room < 0:
            break
        count += 1
    return count


def fit_load(load: Load, max_frame: int) -> Load:
    """`load` with only as many per-task figures as fit a PONG in `max_frame` (the first ones;
    a task left out simply has no figure in this report)."""
    if _pong_size(load) <= max_frame:
        return load
    # The envelope at its worst: an array16 header once there are 16 entries or more.
    room = max_frame - _pong_size(replace(load, tasks=())) - 2
    keep = 0
    for task in load.tasks:
        room -= len(msgpack.packb(task.to_wire(), use_bin_type=True))
        if room < 0:
            break
        keep += 1
    return replace(load, tasks=load.tasks[:keep])


def _pong_size(load: Load) -> int:
    return len(Pong(_U32_MAX, load).to_bytes()) + FRAME_OVERHEAD


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= max_bytes:
        return text
    return data[: max(0, max_bytes)].decode("utf-8", "ignore")


def fit_error(error: Error, max_frame: int) -> Error:
    """An ERROR whose ``message`` is cut (at a character boundary) so the frame fits
    `max_frame`. Cutting n bytes of text shrinks the frame by at least n (a str header never
    grows when its text shrinks)."""
    excess = len(error.to_bytes()) + FRAME_OVERHEAD - max_frame
    return error if excess <= 0 else replace(error, message=_cut(error.message, excess))


def fit_device_log(log: DeviceLog, max_frame: int) -> DeviceLog:
    """A DEVICE_LOG whose ``text`` is cut to fit `max_frame`, as `fit_error` does."""
    excess = len(log.to_bytes()) + FRAME_OVERHEAD - max_frame
    return log if excess <= 0 else replace(log, text=_cut(log.text, excess))


def _cut(text: str, excess: int) -> str:
    return truncate_utf8(text, len(text.encode("utf-8", "surrogateescape")) - excess)


def fit_exec_result(result: ExecResult, max_frame: int) -> ExecResult:
    """An EXEC_RESULT cut to fit `max_frame`, stderr first, then stdout, with ``truncated`` set.
    Cutting n bytes shrinks the frame by at least n (a bin header never grows)."""
    excess = len(result.to_bytes()) + FRAME_OVERHEAD - max_frame
    if excess <= 0:
        return result
    from_stderr = min(excess, len(result.stderr))
    from_stdout = min(excess - from_stderr, len(result.stdout))
    return replace(
        result,
        stdout=result.stdout[: len(result.stdout) - from_stdout],
        stderr=result.stderr[: len(result.stderr) - from_stderr],
        truncated=True,
    )


def task_list_page(
    request_id: int,
    entries: Sequence[tuple[int, TaskInfo]],
    cursor: int,
    max_frame: int,
) -> TaskList:
    """The TASK_LIST answering LIST_TASKS(`cursor`): reference device-side paging.

    `entries` are (position, task) in ascending position, e.g. (slot index, task) of a fixed
    task table. The page holds the tasks from the first position >= `cursor`, as many as fit
    `max_frame` (at least one if any remain); ``next_cursor`` is the position of the first task
    left out, absent when none is."""
    remaining = [(pos, info) for pos, info in entries if pos >= cursor]
    count = task_infos_that_fit(max_frame, [info for _, info in remaining])
    if remaining and count == 0:
        raise ValueError(f"a task list entry does not fit max_frame {max_frame}")
    page = tuple(info for _, info in remaining[:count])
    next_cursor = remaining[count][0] if count < len(remaining) else None
    return TaskList(request_id, page, next_cursor)


def max_task_data(max_frame: int, *, offset: int = _U64_MAX) -> int:
    """Largest TASK_DATA ``data`` (bytes) that fits a frame of `max_frame` bytes at stream
    position `offset` (feature TASK_HANDLES: the task named by a one-byte handle). The default
    offset is the largest possible, as in ``max_output_data``."""
    room = max_frame - FRAME_OVERHEAD - (_TASK_DATA_FIXED - 9 + uint_size(offset))
    return _data_room(room)


def _data_room(room: int) -> int:
    """Data bytes that fit `room` bytes together with their bin header."""
    if room - 2 <= 0xFF:
        return max(0, room - 2)  # bin8
    return max(0xFF, room - 3)  # bin16 costs one byte more, never below what bin8 allows


def refit(message: Message, max_frame: int) -> tuple[Message, ...]:
    """`message` made to fit `max_frame`, for a message built for a larger frame than the peer
    now declares (e.g. output queued for a gateway that restarted with a smaller `max_frame`):
    TASK_OUTPUT and EXEC_OUTPUT are split into several at consecutive offsets (nothing lost),
    ERROR, DEVICE_LOG
    and EXEC_RESULT are cut. Empty if it cannot be made to fit (the sender drops it)."""
    if len(message.to_bytes()) + FRAME_OVERHEAD <= max_frame:
        return (message,)
    if isinstance(message, TaskOutput):
        id_len = len(message.task_id.encode("utf-8", "surrogateescape"))
        chunk = max_output_data(max_frame, id_len, offset=message.offset + len(message.data))
        if chunk <= 0:
            return ()
        data, offset = message.data, message.offset
        return tuple(
            replace(message, offset=offset + start, data=data[start : start + chunk])
            for start in range(0, len(data), chunk)
        )
    if isinstance(message, ExecOutput):
        end = message.offset + len(message.data)
        chunk = max_exec_output_data(max_frame, request_id=message.request_id, offset=end)
        if chunk <= 0:
            return ()
        data, offset = message.data, message.offset
        return tuple(
            replace(message, offset=offset + start, data=data[start : start + chunk])
            for start in range(0, len(data), chunk)
        )
    fitted: Message
    if isinstance(message, Error):
        fitted = fit_error(message, max_frame)
    elif isinstance(message, DeviceLog):
        fitted = fit_device_log(message, max_frame)
    elif isinstance(message, ExecResult):
        fitted = fit_exec_result(message, max_frame)
    else:
        return ()
    return (fitted,) if len(fitted.to_bytes()) + FRAME_OVERHEAD <= max_frame else ()
