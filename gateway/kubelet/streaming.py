"""exec, attach and portForward: what runs on a device, as kubectl exec/attach reach it.

The channels (WebSocket or SPDY/3.1) are gateway.kubelet.remotecommand's; this module decides
what a request may do on a device, runs it through the provider and reports the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.kubelet.errors import ExecFailed, NoContainerLog
from gateway.kubelet.podjson import container_names
from gateway.kubelet.provider import ExecOutcome, JsonObject, KubeletProvider
from gateway.kubelet.remotecommand import (
    STDERR,
    STDOUT,
    ChannelStream,
    SpdyChannelStream,
    StreamOptions,
    exit_code_status,
    failure_status,
    is_spdy,
    is_websocket,
    success_status,
)
from gateway.logs import read_logs

logger = logging.getLogger(__name__)

EXEC_PATHS = ("/exec/{namespace}/{pod}/{container}", "/exec/{namespace}/{pod}/{uid}/{container}")
ATTACH_PATHS = (
    "/attach/{namespace}/{pod}/{container}",
    "/attach/{namespace}/{pod}/{uid}/{container}",
)
PORT_FORWARD_PATHS = ("/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}")

NOT_AN_UPGRADE = (
    "exec and attach need a streaming connection: a WebSocket (v5.channel.k8s.io) or SPDY/3.1 "
    "upgrade request, as the API server sends for kubectl exec/attach"
)
PORT_FORWARD_UNSUPPORTED = (
    "port-forward is not possible to a wirelet device: a device task has no network socket "
    "the gateway could connect to (pods on device nodes share the gateway's address only "
    "for status)"
)
CP_UNSUPPORTED = (
    "kubectl cp is not possible with a wirelet device: it runs `tar` in the container with "
    "stdin, and a device has neither a file system reachable through wirelet nor exec stdin"
)
NO_TTY = (
    "a TTY was requested, but a wirelet device cannot give one: run kubectl exec/attach "
    "without -t (and without -i: the device takes no stdin)"
)
NO_STDIN = (
    "stdin was requested, but a wirelet device takes no input for {what}: run kubectl without -i"
)

FindPod = Callable[[web.Request, str, str], Awaitable[JsonObject | None]]


class StreamingHandlers:
    """exec, attach and portForward over a provider; `find_pod` answers for the request's node."""

    def __init__(
        self, provider: KubeletProvider, find_pod: FindPod, stopping: Callable[[], bool]
    ) -> None:
        self._provider = provider
        self._find_pod = find_pod
        self._stopping = stopping

    def register(self, app: web.Application) -> None:
        for path in EXEC_PATHS:
            app.router.add_route("*", path, self.exec)
        for path in ATTACH_PATHS:
            app.router.add_route("*", path, self.attach)
        for path in PORT_FORWARD_PATHS:
            app.router.add_route("*", path, self.port_forward)

    async def exec(self, request: web.Request) -> web.StreamResponse:
        """`kubectl exec`: the device's EXEC, its output and exit code."""
        missing = await self._missing(request, "exec")
        if missing is not None:
            return missing
        options = _stream_options(request)
        stream = await _open_streams(request, options)
        if isinstance(stream, web.StreamResponse):
            return stream
        namespace, pod, container = _target(request)
        problem = _stream_problem(options, "exec")
        if problem:
            await stream.finish(failure_status(problem, "BadRequest", 400))
            return stream.response
        wanted = {"stdout": (options.stdout, STDOUT), "stderr": (options.stderr, STDERR)}

        async def forward(name: str, data: bytes) -> None:
            # Each piece goes to kubectl as the device sends it.
            enabled, channel = wanted[name]
            if enabled:
                await stream.write(channel, data)

        running = asyncio.ensure_future(
            self._provider.exec(namespace, pod, container, options.command, forward)
        )
        gone = asyncio.ensure_future(stream.closed_by_client.wait())
        try:
            await asyncio.wait({running, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not running.done():
            # kubectl went away (Ctrl-C): nobody is left to answer. The device's EXEC keeps
            # its own timeout; its late result is dropped by the session.
            running.cancel()
            await stream.close()
            return stream.response
        try:
            outcome = running.result()
        except ConnectionError:
            return stream.response  # kubectl went away while output was on its way
        except ExecFailed as exc:
            await stream.finish(failure_status(str(exc)))
            return stream.response
        except Exception as exc:  # a bug must still end the stream with a message
            logger.exception("exec %s/%s/%s failed", namespace, pod, container)
            await stream.finish(failure_status(f"internal error in the gateway: {exc}"))
            return stream.response
        try:
            if options.stderr:
                for note in _outcome_notes(outcome):
                    await stream.write(STDERR, f"\nwirelet: {note}\n".encode())
        except ConnectionError:
            return stream.response
        await stream.finish(exit_code_status(outcome.exit_code))
        return stream.response

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """`kubectl attach`: the running task's output from now on, until it stops."""
        missing = await self._missing(request, "attach")
        if missing is not None:
            return missing
        options = _stream_options(request)
        stream = await _open_streams(request, options)
        if isinstance(stream, web.StreamResponse):
            return stream
        namespace, pod, container = _target(request)
        problem = _stream_problem(options, "attach")
        source = None
        if not problem:
            with contextlib.suppress(NoContainerLog):
                source = await self._provider.find_container_log(namespace, pod, container)
            if source is None or not await source.is_running():
                problem = f'container "{container}" in pod "{pod}" is not running'
        if problem or source is None:
            await stream.finish(failure_status(problem, "BadRequest", 400))
            return stream.response
        chunks = read_logs(
            source,
            tail_lines=0,
            follow=True,
            stop=lambda: self._stopping() or stream.closed_by_client.is_set(),
            announce_ready=True,
        )
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if chunk and (options.stdout or options.stderr):
                        await stream.write(STDOUT if options.stdout else STDERR, chunk)
        except ConnectionError:
            return stream.response
        await stream.finish(success_status())
        return stream.response

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        missing = await self._missing(request, "portForward")
        if missing is not None:
            return missing
        return _refusal(PORT_FORWARD_UNSUPPORTED)

    async def _missing(self, request: web.Request, what: str) -> web.Response | None:
        """The kubelet's plain-text answer, before any upgrade, when the pod or container is
        not there or no stream is asked for (kubectl prints `error: unable to upgrade
        connection: <text>`); None if all is well. The kubelet's codes: 404 for the pod
        (pkg/kubelet/server/server.go), 400 for no stdin, stdout or stderr, 500 for the
        container (the runtime finds none: Kubelet.GetExec / GetAttach with a plain error,
        which streaming.WriteError answers 500)."""
        info = request.match_info
        namespace, pod_name = info["namespace"], info["pod"]
        pod = await self._find_pod(request, namespace, pod_name)
        if pod is None:
            return web.Response(status=404, text=f'pod "{pod_name}" does not exist')
        uid = info.get("uid")
        if uid and pod.get("metadata", {}).get("uid") != uid:
            # A replaced pod: as the kubelet's portForward answers; its exec would run in the
            # new pod of that name, which is not what was asked for.
            return web.Response(status=404, text=f'pod "{pod_name}" not found (uid {uid})')
        if what != "portForward":
            options = _stream_options(request)
            if not (options.stdin or options.stdout or options.stderr):
                # The kubelet's remotecommand options check, between the pod and the container.
                return web.Response(status=400, text=NO_STREAMS)
        container = info.get("container")
        if container is None or container in container_names(pod):
            return None
        if what == "attach":
            text = f"container {container} not found in pod {pod_name}_{namespace}"
        else:
            text = f'container not found ("{container}")'
        return web.Response(status=500, text=text)


NO_STREAMS = "you must specify at least 1 of stdin, stdout, stderr"


def _stream_problem(options: StreamOptions, what: str) -> str:
    """Why an exec/attach that has its pod and container cannot go ahead, in words for the
    user; "" if it can."""
    if what == "exec" and options.command[:1] == ("tar",):
        return CP_UNSUPPORTED
    if options.tty:
        return NO_TTY
    if options.stdin:
        return NO_STDIN.format(what=what)
    if what == "exec" and not options.command:
        return "no command given: kubectl exec POD -- COMMAND [ARGS...]"
    return ""


async def _open_streams(
    request: web.Request, options: StreamOptions
) -> ChannelStream | SpdyChannelStream | web.StreamResponse:
    """The client's channels over whichever protocol it asked for, or the answer refusing it."""
    if is_websocket(request):
        return await ChannelStream.accept(request)
    if is_spdy(request):
        spdy = await SpdyChannelStream.accept(request, options)
        if isinstance(spdy, SpdyChannelStream) and spdy.closed_by_client.is_set():
            return spdy.response  # did not open its streams in time: hung up on
        return spdy
    return _refusal(NOT_AN_UPGRADE)


def _outcome_notes(outcome: ExecOutcome) -> list[str]:
    """What the user must know about output that did not arrive whole."""
    notes = []
    if outcome.truncated:
        notes.append(
            "output was cut by the device: it could not send all of it (a firmware without "
            "streamed exec answers in one protocol frame, one that runs exec synchronously "
            "sends what its transmit buffer holds; PROTOCOL.md section 9); the rest is missing"
        )
    if outcome.limit_bytes is not None:
        notes.append(
            f"output was cut at {outcome.limit_bytes} bytes (kubelet.exec_output_limit_bytes); "
            "the rest was dropped. Raise the limit in the gateway's config to see more"
        )
    if outcome.missing_bytes:
        notes.append(
            f"{outcome.missing_bytes} bytes of output were lost between the device and the "
            "gateway; what arrived is shown"
        )
    return notes


def _refusal(message: str) -> web.Response:
    """400 with a metav1.Status body: kubectl shows its message when an upgrade fails."""
    return web.json_response(failure_status(message, "BadRequest", 400), status=400)


def _stream_options(request: web.Request) -> StreamOptions:
    return StreamOptions.from_query(request.query, request.query.getall("command", []))


def _target(request: web.Request) -> tuple[str, str, str]:
    info = request.match_info
    return info["namespace"], info["pod"], info["container"]
