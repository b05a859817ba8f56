"""Errors of the kubelet API server."""

from __future__ import annotations

from gateway.errors import WireletError


class KubeletApiError(WireletError):
    """The kubelet API could not serve a request."""


class AuthenticationUnavailable(KubeletApiError):
    """Credentials could not be checked right now (TokenReview failed): answer 401, no cache."""


class AuthorizationUnavailable(KubeletApiError):
    """A SubjectAccessReview failed: answer 500 like the kubelet, and do not cache."""


class BadLogQuery(KubeletApiError, ValueError):
    """A /containerLogs query parameter is malformed or out of range (answer 400)."""


class NoContainerLog(KubeletApiError):
    """The container has no instance whose log could be shown (it never started): answer 400
    with the kubelet's words, which this message is."""


class NoFreePort(KubeletApiError):
    """Every port of kubelet.node_ports is taken: the node cannot get its own endpoint."""


class ExecFailed(KubeletApiError):
    """A command could not be run on the device (link down, refused, timed out).

    The message says what happened and what to do; it reaches the user as kubectl's error."""
