"""The real sshd of hil/sshd.py for tests: skipped with the reason where it cannot run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.sshd import Sshd, descendants, free_port, keygen, sshd_missing

__all__ = ["Sshd", "descendants", "free_port", "keygen", "make_sshd", "running_sshd"]


def make_sshd(root: Path) -> Sshd:
    missing = sshd_missing()
    if missing:
        pytest.skip(missing)
    return Sshd(root)


@contextlib.contextmanager
def running_sshd(root: Path) -> Iterator[Sshd]:
    server = make_sshd(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
