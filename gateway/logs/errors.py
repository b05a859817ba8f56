"""Errors of the container log store."""

from __future__ import annotations

from gateway.errors import WireletError


class LogsError(WireletError):
    """Reading or writing a container log failed."""


class LogNotFound(LogsError):
    """The requested log (e.g. of the previous container instance) does not exist."""


class LogWriterClosed(LogsError):
    """A write to a log writer that was already closed (a lifecycle bug in the caller)."""
