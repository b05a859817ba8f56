"""The gateway's state directory: its persistent identity and a private folder for credentials.

The identity names this gateway as the owner of the nodes it serves (an annotation on each node
and the holder of its Lease); it is kept on disk so a restarted gateway on the same host is the
same owner and resumes at once. The private folder (0700) holds key files only while clients are
built (ssl reads keys from files); it is emptied at every start, so a killed gateway never leaves
key material behind past its next start, and never in the system temp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

from gateway.errors import ConfigError

IDENTITY_FILE = "gateway-id"
PRIVATE_DIR = "private"


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"gateway.state_dir: cannot create {self.path}: {exc.strerror} (set [gateway] "
                "state_dir or --state-dir to a directory this user may write)"
            ) from None

    def identity(self) -> str:
        """`<hostname>-<id>`, the id made once and kept in the state dir."""
        file = self.path / IDENTITY_FILE
        try:
            stored = file.read_text().strip() if file.exists() else ""
            if not stored:
                stored = uuid.uuid4().hex[:12]
                partial = file.with_suffix(".tmp")
                partial.write_text(stored + "\n")
                os.replace(partial, file)
        except OSError as exc:
            raise ConfigError(
                f"gateway.state_dir: cannot keep the gateway's identity in {file}: {exc.strerror}"
            ) from None
        return f"{socket.gethostname()}-{stored}"

    @property
    def private(self) -> Path:
        return self.path / PRIVATE_DIR

    def fresh_private(self) -> Path:
        """The private folder, emptied (a killed gateway may have left files) and mode 0700."""
        self.clear_private()
        try:
            self.private.mkdir(mode=0o700)
            os.chmod(self.private, 0o700)  # mkdir's mode is masked by the umask
        except OSError as exc:
            raise ConfigError(
                f"gateway.state_dir: cannot create {self.private}: {exc.strerror}"
            ) from None
        return self.private

    def clear_private(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
