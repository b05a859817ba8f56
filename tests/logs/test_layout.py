"""Log directory names fit the file system for every valid namespace, pod and uid."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gateway.logs import LogConfig, LogStore, Stream, read_logs
from gateway.logs.layout import NAME_MAX, parse_pod_dir_name, pod_dir_name

from .conftest import collect, stopped

UID = "0f6c4d7e-2b9a-4c1e-9d3f-6a5b4c3d2e1f"
LONGEST_NAMESPACE = "n" * 63  # a DNS label
LONGEST_POD = ".".join(["p" * 63, "q" * 63, "r" * 63, "s" * 61])  # a 253-byte DNS subdomain


def test_names_that_fit_are_the_kubelets() -> None:
    assert pod_dir_name("default", "counter", UID) == f"default_counter_{UID}"
    name = "a" * (NAME_MAX - len("default") - len(UID) - 2)
    assert pod_dir_name("default", name, UID) == f"default_{name}_{UID}"


def test_longest_valid_names_are_shortened_with_a_hash_and_keep_the_uid() -> None:
    assert len(LONGEST_POD) == 253
    name = pod_dir_name(LONGEST_NAMESPACE, LONGEST_POD, UID)
    assert len(name.encode()) <= NAME_MAX
    parsed = parse_pod_dir_name(name)
    assert parsed is not None
    namespace, pod, uid = parsed
    assert (namespace, uid) == (LONGEST_NAMESPACE, UID)
    # The pod part: a prefix of the real name, '-', the first 10 hex digits of its SHA-256.
    prefix, digest = pod.rsplit("-", 1)
    assert LONGEST_POD.startswith(prefix) and not prefix.endswith((".", "-"))
    assert digest == hashlib.sha256(LONGEST_POD.encode()).hexdigest()[:10]
    # Deterministic, and two long names sharing a prefix differ.
    assert pod_dir_name(LONGEST_NAMESPACE, LONGEST_POD, UID) == name
    other = LONGEST_POD[:-1] + "t"
    assert pod_dir_name(LONGEST_NAMESPACE, other, UID) != name


async def test_a_253_character_pod_name_is_written_and_read_back(tmp_path: Path) -> None:
    store = LogStore(LogConfig(root=tmp_path))
    writer = store.open_writer(LONGEST_NAMESPACE, LONGEST_POD, UID, "c" * 63, 0)
    writer.write(Stream.STDOUT, b"hello\n")
    await writer.close()
    source = store.source(
        LONGEST_NAMESPACE, LONGEST_POD, UID, "c" * 63, restart=0, is_running=stopped
    )
    assert await collect(read_logs(source)) == b"hello\n"
    assert store.remove_pod(LONGEST_NAMESPACE, LONGEST_POD, UID)
    assert os.listdir(tmp_path) == []
