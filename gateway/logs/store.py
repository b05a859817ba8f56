"""The log store: one root directory, writers per container instance, sources for readers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from gateway.errors import ConfigError
from gateway.logs import cleanup, layout
from gateway.logs.changes import LogChanges
from gateway.logs.config import LogConfig
from gateway.logs.firmware import FIRMWARE_DIR_NAME, FirmwareLog
from gateway.logs.reader import LogSource
from gateway.logs.spool import OutputSpool
from gateway.logs.writer import ContainerLogWriter

# Under the log root, beside the pod directories; no `_` in it, so never taken for one, and
# its files are not `*.log`, so log shippers that tail `<root>/*/*/*.log` never read it.
SPOOL_DIR_NAME = ".spool"


class LogStore:
    def __init__(self, config: LogConfig) -> None:
        self.config = config
        try:
            config.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"logs.dir: cannot create {config.root}: {exc.strerror} (set [logs] dir or "
                "--log-dir to a directory this user may write)"
            ) from None
        # Output acknowledged to a device before its pod's log could take it (gateway.logs.spool).
        self.spool = OutputSpool(config.root / SPOOL_DIR_NAME, fsync=config.fsync)
        # Writers announce new bytes here; followers of the same container wait on it.
        self.changes = LogChanges()

    def firmware_log(self, node: str) -> FirmwareLog:
        """The node's firmware log (its device's DEVICE_LOG lines), served under `/logs/`."""
        return FirmwareLog(self.config.root / FIRMWARE_DIR_NAME / node)

    def container_dir(self, namespace: str, pod: str, uid: str, container: str) -> Path:
        return layout.container_log_dir(self.config.root, namespace, pod, uid, container)

    def open_writer(
        self, namespace: str, pod: str, uid: str, container: str, restart: int
    ) -> ContainerLogWriter:
        """A writer appending to `<restart>.log` (continuing it after a gateway restart)."""
        directory = self.container_dir(namespace, pod, uid, container)
        return ContainerLogWriter(
            directory, restart, self.config, changes=self.changes.signal(directory)
        )

    def mark_instance(
        self, namespace: str, pod: str, uid: str, container: str, restart: int
    ) -> None:
        """Create the (empty) log of a container instance before its task is started: the
        record that its task id was used, which outlives a gateway crash (see `instance_used`)."""
        directory = self.container_dir(namespace, pod, uid, container)
        directory.mkdir(parents=True, exist_ok=True)
        layout.current_log_file(directory, restart).touch()
        # The previous instance's log stays (`kubectl logs --previous`); older ones go, as the
        # kubelet keeps one dead container per container. The first instance's stays as an
        # empty file: `instance_used` asks about it when no status says the container ran.
        # Before the third instance there is nothing older (no listing on every first start).
        if restart >= 2 and cleanup.remove_instances_before(directory, restart - 1):
            layout.current_log_file(directory, 0).touch()

    def unmark_instance(
        self, namespace: str, pod: str, uid: str, container: str, restart: int
    ) -> None:
        """The device refused the instance's start: its id was not used. An empty log goes."""
        current = layout.current_log_file(
            self.container_dir(namespace, pod, uid, container), restart
        )
        if current.exists() and current.stat().st_size == 0:
            current.unlink(missing_ok=True)

    def instance_used(
        self, namespace: str, pod: str, uid: str, container: str, restart: int
    ) -> bool:
        """Whether a gateway started (or tried to start) this container instance: its log exists."""
        directory = self.container_dir(namespace, pod, uid, container)
        return bool(layout.instance_log_files(directory, restart))

    def source(
        self,
        namespace: str,
        pod: str,
        uid: str,
        container: str,
        *,
        restart: int,
        is_running: Callable[[], Awaitable[bool]],
    ) -> LogSource:
        directory = self.container_dir(namespace, pod, uid, container)
        return LogSource(directory, restart, is_running, self.changes.signal(directory))

    def remove_pod(self, namespace: str, pod: str, uid: str) -> bool:
        """Delete a pod's logs (and any output still spooled for it); True if there were any."""
        spooled = self.spool.discard_pod(uid)
        return cleanup.remove_pod_logs(self.config.root, namespace, pod, uid) or spooled

    def remove_orphans(self, live_uids: Collection[str]) -> list[Path]:
        """Delete the logs and spooled output of every pod whose uid is not in `live_uids`."""
        self.spool.discard_all_but(live_uids)
        return cleanup.remove_orphaned_pod_logs(self.config.root, live_uids)
