"""How much request head (request line and headers) the kubelet API reads: what the kubelet does.

The kubelet's Go server has MaxHeaderBytes = 1 MiB (net/http's default too); net/http reads up
to that plus 4096 bytes of request line and headers together and answers anything longer with
431 Request Header Fields Too Large. Long request lines are legitimate: every argument of
`kubectl exec POD -- CMD ARGS...` is a `command=` query parameter, and node proxy requests pass
any query on. aiohttp's defaults (8190 bytes a line, then 400) refuse them.

aiohttp limits each line, not the head as a whole (128 header lines of 1 MiB each would be
buffered), so `HeadLimitedHandler` also counts the bytes of the head being received.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.typedefs import Handler
from aiohttp.web_request import BaseRequest

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES: Final = 1 << 20
# net/http's read limit for a request head: MaxHeaderBytes plus its 4096 bytes of bufio slop.
HEAD_LIMIT: Final = MAX_HEADER_BYTES + 4096

# Passed to aiohttp's RequestHandler: one line may take the whole head's allowance.
HANDLER_ARGS: Final[dict[str, Any]] = {"max_line_size": HEAD_LIMIT, "max_field_size": HEAD_LIMIT}

_HEAD_END = b"\r\n\r\n"
TOO_LARGE = (
    f"431 Request Header Fields Too Large: the request line and headers exceed "
    f"{MAX_HEADER_BYTES} bytes (the kubelet's limit)\n"
)


class HeadLimitedHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, answering a request head over `HEAD_LIMIT` bytes with 431.

    The head being received is counted from the end of the previous one (the blank line)
    while no request is with the application (`serving`, entered by `head_budget`), so
    request heads are counted and bodies and streams (exec, attach, follow) are not."""

    __slots__ = ("_edge", "_head_bytes", "_serving", "_waiting")

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_bytes = 0
        self._serving = 0
        self._waiting = 0  # complete heads not yet with the application
        self._edge = b""  # the last bytes received: a blank line may straddle two reads

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """A request is with the application until this exits."""
        self._serving += 1
        self._waiting = max(0, self._waiting - 1)
        try:
            yield
        finally:
            self._serving -= 1
            self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        edge = self._edge
        seen = edge + data
        self._edge = seen[-3:]
        start = 0  # where the head being received starts in `data`
        end = seen.find(_HEAD_END)
        while end >= 0:
            after = end + len(_HEAD_END) - len(edge)  # just past the blank line, in `data`
            if self._too_large(after - start):
                return
            self._waiting += 1
            self._head_bytes = 0
            start = after
            end = seen.find(_HEAD_END, end + len(_HEAD_END))
        if self._too_large(len(data) - start):
            return
        super().data_received(data)

    def _too_large(self, count: int) -> bool:
        """Counts `count` more bytes of the head being received; True once it is answered 431."""
        if self._serving:
            return False
        self._head_bytes += count
        # With a request still waiting for its answer a 431 now would overtake it: then
        # aiohttp's line limit answers (handle_error), in order.
        if self._head_bytes <= HEAD_LIMIT or self._waiting:
            return False
        self._refuse()
        return True

    def _refuse(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        logger.info("kubelet API: a request head over %d bytes: 431", HEAD_LIMIT)
        body = TOO_LARGE.encode()
        transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        self.force_close()
        transport.close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse; a line over its limit gets the
        kubelet's 431 instead of aiohttp's 400 (when the count above has not caught it: a
        long line right after a pipelined request)."""
        if isinstance(exc, LineTooLong):
            logger.info("kubelet API: a request line or header over %d bytes: 431", HEAD_LIMIT)
            response = web.Response(status=431, text=TOO_LARGE)
            response.force_close()
            return response
        return super().handle_error(request, status, exc, message)


@web.middleware
async def head_budget(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Marks the request as with the application while it is (outermost middleware)."""
    protocol = request.protocol
    if not isinstance(protocol, HeadLimitedHandler):
        return await handler(request)  # aiohttp's own server (embedding, test clients)
    with protocol.serving():
        return await handler(request)
