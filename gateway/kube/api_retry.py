"""When the pod controller sends a refused status write or final delete again: only when a
retry may pass, after a back-off that doubles per failure. This is on top of the API client's
own quick retries (gateway.kube.api), for refusals that outlast them."""

from __future__ import annotations

from gateway.kube.api import KubeApiError

# A status write or final delete the API server refused in a way that may pass (5xx, 429, a
# timeout, the connection) is retried after this back-off, doubling per failure.
API_RETRY_INITIAL_S = 0.2
API_RETRY_MAX_S = 30.0
# Client errors a retry may cure (credentials or permissions fixed, rate limits); any other
# 4xx is the request's own fault and is never sent again unchanged.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 403, 408, 429})


def retryable(exc: KubeApiError) -> bool:
    return exc.status >= 500 or exc.status in RETRYABLE_CLIENT_ERRORS


def retry_delay(failures: int) -> float:
    """The back-off after `failures` failures in a row."""
    return min(API_RETRY_INITIAL_S * 2.0 ** min(failures, 20), API_RETRY_MAX_S)
