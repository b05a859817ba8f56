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
