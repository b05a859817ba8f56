"""The gateway's one exception root, with a subtree per layer.

Callers catch `WireletError` for "anything the gateway reports"; a layer catches its own
subtree. Timeouts also subclass `TimeoutError` so generic timeout handling keeps working.
`asyncio.CancelledError` is never wrapped in any of these.
"""

from __future__ import annotations


class WireletError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(WireletError):
    """A config file or flag is wrong; the message names the key and the expected form."""


# --- transport: moving bytes -------------------------------------------------------------


class TransportError(WireletError):
    """A transport could not open, read or write."""


class PortNotFound(TransportError):
    """The port path does not exist (device unplugged, or never there)."""


class PortBusy(TransportError):
    """Another process holds the port (exclusive open failed)."""


class TransportClosed(TransportError):
    """The transport is closed or the port vanished while in use."""


# --- link: the protocol session with one device ------------------------------------------


class LinkError(WireletError):
    """The session with a device failed or a request to it could not complete."""


class LinkTimeout(LinkError, TimeoutError):
    """A device did not answer in time."""


class LinkDown(LinkError):
    """The request needs the link up, and it is not (connecting, reconnecting or closed)."""


class SessionClosed(LinkDown):
    """The session was closed by its owner; no more requests are possible."""


class HandshakeError(LinkError):
    """The device answered the handshake with something we cannot work with."""


class UnsupportedProtocolVersion(HandshakeError):
    """The device speaks a protocol version this gateway does not."""


class DeviceRejected(LinkError):
    """The device refused a request (unknown app, no free slot, unknown task...)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class InvalidStateTransition(LinkError):
    """A bug: a session tried a state change its state machine does not allow."""


class DeviceProtocolError(HandshakeError):
    """The device broke the protocol in a way retrying cannot fix (e.g. a task list that
    never ends); the message says what it sent and what the protocol asks for."""
