"""The device's task list, assembled page by page (PROTOCOL.md section 9, paging). Pure.

The session sends LIST_TASKS with cursor 0, then with each reply's `next_cursor`, until a reply
has none, and merges the pages by task id. A list that cannot be right raises
`DeviceProtocolError`: the device must not be able to keep the gateway paging forever.
"""

from __future__ import annotations

import firmware_protocol as wire
from gateway.errors import DeviceProtocolError
from gateway.link.events import TaskInfo

# LIST_TASKS pages a device may take to list its tasks: far beyond any real task table, small
# enough that a device that never ends its list is caught.
MAX_LIST_PAGES = 1024
# Tasks one listing may hold, all pages together: bounds what a device can make us keep.
MAX_LISTED_TASKS = 4096


class TaskListPages:
    """One listing in progress: `request(rid)` for the next page, `add(reply)` its answer,
    until `add` returns the whole list."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._cursor = 0
        self._pages = 0
        self._listed: dict[str, TaskInfo] = {}

    def request(self, request_id: int) -> wire.ListTasks:
        return wire.ListTasks(request_id, cursor=self._cursor)

    def add(self, reply: wire.TaskList) -> list[TaskInfo] | None:
        """Take one page: the whole list once it ended, None while more pages are to come."""
        self._pages += 1
        for task in reply.tasks:
            self._listed[task.task_id] = task_info(task)
        if len(self._listed) > MAX_LISTED_TASKS:
            raise DeviceProtocolError(
                f"{self._label}: the device lists more than {MAX_LISTED_TASKS} tasks; "
                "refusing it (firmware bug?)"
            )
        following = reply.next_cursor
        if following is None:
            return list(self._listed.values())
        if following <= self._cursor or not reply.tasks:
            raise DeviceProtocolError(
                f"{self._label}: broken task list: LIST_TASKS from cursor {self._cursor} was "
                f"answered with {len(reply.tasks)} task(s) and next_cursor {following} "
                "(a page with more to come must hold a task and a greater next_cursor; "
                "PROTOCOL.md section 9); firmware bug"
            )
        if self._pages >= MAX_LIST_PAGES:
            raise DeviceProtocolError(
                f"{self._label}: the device's task list did not end within {MAX_LIST_PAGES} "
                "pages (PROTOCOL.md section 9); firmware bug"
            )
        self._cursor = following
        return None


def task_info(task: wire.TaskInfo) -> TaskInfo:
    """A listed task as the session reports it (the wire's entry, without the wire)."""
    return TaskInfo(
        task.task_id, task.app, task.running, task.exit_code, task.stdout_end, task.stderr_end
    )
