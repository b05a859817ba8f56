"""One long-lived `sh` on the host per connection, fed scripts one at a time.

Opening an SSH channel costs the host a fork and a login shell each time (0.3 s on a loaded
machine); a poll every 0.2 s would spend most of it there. The gateway keeps one `sh` reading
commands from its stdin instead and frames every answer (gateway.ssh.remote.framed/streamed),
so one round trip is only the script's own work. Scripts run in a subshell with stdin from
/dev/null, so none can read the command stream.
"""

from __future__ import annotations

import asyncio

import asyncssh

from gateway.ssh import remote
from gateway.ssh.remote import ListedTask, OutputChunk, PollAnswerError


class RemoteShell:
    """Serialises scripts on one `sh -s` channel; callers bound each call with a timeout and
    drop the whole connection if it expires (the stream's framing is lost then)."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection) -> RemoteShell:
        process = await conn.create_process("sh -s", encoding=None, stderr=asyncssh.DEVNULL)
        return cls(process)

    async def run(self, script: str) -> tuple[int, bytes]:
        """Run a script; its exit status and its stdout and stderr together."""
        async with self._lock:
            self.process.stdin.write(remote.framed(script).encode())
            header = await self._line()
            fields = header.split()
            if len(fields) != 3 or fields[0] != b"R" or not fields[2].isdigit():
                raise PollAnswerError(f"unexpected answer {header[:80]!r}")
            output = await self.process.stdout.readexactly(int(fields[2]))
            if await self._line() != b"END":
                raise PollAnswerError("answer without END")
            return int(fields[1]), output

    async def poll(self, script: str) -> tuple[list[ListedTask], list[OutputChunk]]:
        """Run a poll script (gateway.ssh.remote.poll_script) and read its framed answer."""
        tasks: list[ListedTask] = []
        chunks: list[OutputChunk] = []
        async with self._lock:
            self.process.stdin.write(remote.streamed(script).encode())
            while True:
                item = remote.parse_poll_line(await self._line())
                if item is None:
                    return tasks, chunks
                if isinstance(item, ListedTask):
                    tasks.append(item)
                    continue
                data = await self.process.stdout.readexactly(item.size)
                chunks.append(OutputChunk(item.task_id, item.stream, item.offset, data))

    async def _line(self) -> bytes:
        line = await self.process.stdout.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("the host's shell ended (connection lost)")
        return line[:-1]

    def close(self) -> None:
        self.process.close()
