"""The query of `GET /containerLogs/...`: PodLogOptions as the API server passes them through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.kubelet.errors import BadLogQuery
from gateway.logs import parse_rfc3339
from gateway.logs.timestamps import NANOS_PER_SECOND

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True, slots=True)
class LogQuery:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_ns: int | None = None


def parse_log_query(params: Mapping[str, str], *, now_ns: int) -> LogQuery:
    """Validate like the API server's PodLogOptions validation; sinceSeconds becomes a time."""
    since_seconds = _int(params, "sinceSeconds", minimum=1)
    since_time = params.get("sinceTime")
    if since_seconds is not None and since_time is not None:
        raise BadLogQuery("at most one of sinceTime or sinceSeconds may be specified")
    since_ns = None
    if since_seconds is not None:
        since_ns = now_ns - since_seconds * NANOS_PER_SECOND
    elif since_time is not None:
        try:
            since_ns = parse_rfc3339(since_time)
        except ValueError:
            raise BadLogQuery(f"sinceTime: not an RFC3339 time: {since_time!r}") from None
    return LogQuery(
        follow=_bool(params, "follow"),
        previous=_bool(params, "previous"),
        timestamps=_bool(params, "timestamps"),
        tail_lines=_int(params, "tailLines", minimum=0),
        limit_bytes=_int(params, "limitBytes", minimum=1),
        since_ns=since_ns,
    )


def _bool(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadLogQuery(f"{name}: expected true or false, got {value!r}")


INT64_MAX = (1 << 63) - 1


def _int(params: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadLogQuery(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise BadLogQuery(f"{name}: must be at least {minimum}, got {number}")
    if number > INT64_MAX:  # the kubelet parses these as int64
        raise BadLogQuery(f"{name}: {value!r} is out of range (at most {INT64_MAX})")
    return number
