"""Task handles (feature TASK_HANDLES): a one-byte name for a task's output frames.

A TASK_OUTPUT carries the task id, 40 bytes as the gateway makes them, in every frame. With the
feature negotiated, the sending link binds a small handle to the task id in one TASK_OUTPUT
(key 5 ``handle``) and sends the task's later output as TASK_DATA, which names the handle only.
Bindings live as long as the sequence space: frames are delivered in order and exactly once,
so a receiver always sees a binding before the TASK_DATA that uses it, and a fresh start
(PROTOCOL.md section 8) forgets them on both sides. The receiving link turns TASK_DATA back
into a TaskOutput, so applications only ever see TaskOutput.

Both halves are pure: the link calls them as frames get their sequence numbers (sender) and as
frames are delivered (receiver).
"""

from __future__ import annotations

from dataclasses import replace

from .budget import HANDLE_BINDING_SIZE
from .constants import FRAME_OVERHEAD, MAX_TASK_HANDLE
from .messages import Message, TaskData, TaskOutput


class HandleSender:
    """The sending side: which handle names which task in this sequence space."""

    def __init__(self) -> None:
        self._by_task: dict[str, int] = {}
        self._owner: list[str | None] = [None] * (MAX_TASK_HANDLE + 1)
        self._next = 0

    def reset(self) -> None:
        """A fresh sequence space: the peer knows no binding any more."""
        self._by_task.clear()
        self._owner = [None] * (MAX_TASK_HANDLE + 1)
        self._next = 0

    def encode(self, message: TaskOutput, limit: int) -> tuple[Message, TaskOutput | None]:
        """The frame to send for `message` as its sequence number is assigned, and what is
        left of it (None if nothing) when the binding frame could not take all of its data.

        Must be called in sequence order: a handle counts as bound from the frame that binds it.
        """
        handle = self._by_task.get(message.task_id)
        if handle is not None:
            return TaskData(handle, message.stream, message.offset, message.data), None
        handle = self._bind(message.task_id)
        binding = replace(message, handle=handle)
        excess = len(binding.to_bytes()) + FRAME_OVERHEAD - limit
        if excess <= 0:
            return binding, None
        # Sized for TASK_DATA: the binding frame takes what fits, TASK_DATA the rest.
        keep = max(len(message.data) - excess - HANDLE_BINDING_SIZE, 0)
        while (
            keep
            and len(replace(binding, data=message.data[:keep]).to_bytes()) + (FRAME_OVERHEAD)
            > limit
        ):
            keep -= 1
        rest = replace(message, offset=message.offset + keep, data=message.data[keep:])
        return replace(binding, data=message.data[:keep]), rest

    def _bind(self, task_id: str) -> int:
        # Round robin: the handle reused is the one bound longest ago. Its old task, if it
        # writes again, simply gets a new binding first.
        handle = self._next
        self._next = (self._next + 1) % (MAX_TASK_HANDLE + 1)
        old = self._owner[handle]
        if old is not None:
            del self._by_task[old]
        self._owner[handle] = task_id
        self._by_task[task_id] = handle
        return handle


class UnboundHandleError(Exception):
    """TASK_DATA named a handle no TASK_OUTPUT of this sequence space bound."""


class HandleReceiver:
    """The receiving side: the bindings seen in this sequence space."""

    def __init__(self) -> None:
        self._tasks: dict[int, str] = {}

    def reset(self) -> None:
        self._tasks.clear()

    def decode(self, message: Message) -> Message:
        """`message` as the application sees it: TASK_DATA becomes the TaskOutput it stands
        for, a binding TASK_OUTPUT is recorded (and delivered without its handle). Raises
        ``UnboundHandleError`` for a handle that was never bound."""
        if isinstance(message, TaskData):
            task_id = self._tasks.get(message.handle)
            if task_id is None:
                raise UnboundHandleError(
                    f"TaskData.handle: {message.handle} is not bound in this session"
                )
            return TaskOutput(task_id, message.stream, message.offset, message.data)
        if isinstance(message, TaskOutput) and message.handle is not None:
            self._tasks[message.handle] = message.task_id
            return replace(message, handle=None)
        return message
