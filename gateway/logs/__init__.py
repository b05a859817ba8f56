"""Container logs as CRI-format files under a /var/log/pods-like root, and reading them back.

Depends on nothing else in the gateway but `gateway.errors` (enforced by import-linter).
"""

from gateway.logs.config import LogConfig
from gateway.logs.cri import CriRecord, Stream, Tag, parse_record
from gateway.logs.errors import LogNotFound, LogsError, LogWriterClosed
from gateway.logs.reader import LogSource, previous_log_exists, read_logs
from gateway.logs.store import LogStore
from gateway.logs.timestamps import format_rfc3339nano, parse_rfc3339
from gateway.logs.writer import ContainerLogWriter

__all__ = [
    "ContainerLogWriter",
    "CriRecord",
    "LogConfig",
    "LogNotFound",
    "LogSource",
    "LogStore",
    "LogWriterClosed",
    "LogsError",
    "Stream",
    "Tag",
    "format_rfc3339nano",
    "parse_record",
    "parse_rfc3339",
    "previous_log_exists",
    "read_logs",
]
