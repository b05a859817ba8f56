"""The directory source over real links in a temporary directory: adds, removals, and links left
dangling found in turn, a bounded number of `stat` calls per scan."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from gateway.devices.found import FoundDevice
from gateway.devices.sources.dir import DANGLING_CHECKS, DirSource


class Sink:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []

    def device_added(self, found: FoundDevice) -> None:
        self.added.append(found.key)

    def device_removed(self, key: str, source: str) -> None:
        self.removed.append(key)

    def device_ignored(self, where: str, why: str) -> None:
        raise AssertionError(f"{where}: {why}")


def test_a_dangling_link_among_many_is_removed_within_its_turn_and_stats_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttys, links = tmp_path / "ttys", tmp_path / "links"
    ttys.mkdir()
    links.mkdir()
    count = 3 * DANGLING_CHECKS + 5
    for i in range(count):
        (ttys / f"tty{i}").touch()
        (links / f"dev{i:04d}").symlink_to(ttys / f"tty{i}")
    source, sink = DirSource((str(links),)), Sink()
    source.scan(sink)
    assert len(sink.added) == count and not sink.removed

    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)  # the module calls os.stat
    (ttys / "tty7").unlink()  # the tty is gone, its link stays
    scans = 0
    while not sink.removed:
        stats.clear()
        source.scan(sink)
        scans += 1
        assert len(stats) <= DANGLING_CHECKS + 1  # the directory, then the links in turn
        assert scans <= math.ceil(count / DANGLING_CHECKS)
    assert sink.removed == [str(links / "dev0007")]
