"""The firmware log of a node: DEVICE_LOG lines in a text file, rotated, within a line budget."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.logs.firmware import FirmwareLog, FirmwareLogger, LineBudget


def test_lines_are_one_per_entry_with_time_level_and_uptime(tmp_path: Path) -> None:
    log = FirmwareLog(tmp_path / "node-a")
    log.append(2, "heap low:\n1.2 kB frei ✓\x1b[0m", 12345)
    log.append(0, "tick", 0)
    log.append(9, "beyond error is error", 1)
    lines = log.path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(" WARNING [uptime 12.345] heap low: 1.2 kB frei ✓ [0m")
    assert lines[0][:4].isdigit() and lines[0][19] == "." and "Z " in lines[0]
    assert lines[1].endswith(" DEBUG tick")
    assert lines[2].endswith(" ERROR [uptime 0.001] beyond error is error")
    assert log.files() == [log.path]


def test_the_file_rotates_keeping_one_older_file(tmp_path: Path) -> None:
    log = FirmwareLog(tmp_path / "node-a", max_bytes=1000)
    for i in range(100):
        log.append(1, f"line {i:03d} " + "x" * 40, 0)
    assert log.files() == [log.path, log.rotated]
    assert log.path.stat().st_size <= 1000 and log.rotated.stat().st_size <= 1000
    assert log.path.read_text().splitlines()[-1].endswith("line 099 " + "x" * 40)


def test_a_device_logging_over_its_budget_has_the_excess_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = FirmwareLogger("/dev/ttyACM0", LineBudget(rate_per_s=0.001, burst=5))
    logger.attach(FirmwareLog(tmp_path / "node-a"))
    with caplog.at_level(logging.DEBUG, logger="gateway.logs.firmware"):
        for i in range(1000):
            logger.line(2, f"flood {i}", 0)
    assert logger.file is not None
    lines = logger.file.path.read_text().splitlines()
    assert [line.rsplit(" ", 2)[-2:] for line in lines] == [["flood", str(i)] for i in range(5)]
    assert logger.budget.dropped == 995
    assert len([r for r in caplog.records if "firmware: flood" in r.message]) == 5
    logger.budget = LineBudget(rate_per_s=1000, burst=5)
    logger.budget.dropped = 995
    logger.line(3, "back to normal", 0)
    lines = logger.file.path.read_text().splitlines()
    assert "995 firmware log lines dropped" in lines[-2]
    assert lines[-1].endswith(" ERROR back to normal")


def test_lines_before_the_node_is_known_are_written_once_it_is(tmp_path: Path) -> None:
    logger = FirmwareLogger("/dev/ttyACM0")
    for i in range(FirmwareLogger.EARLY_LINES + 10):
        logger.line(1, f"boot {i}", i)
    logger.attach(FirmwareLog(tmp_path / "node-a"))
    logger.line(1, "served", 0)
    assert logger.file is not None
    lines = logger.file.path.read_text().splitlines()
    assert len(lines) == FirmwareLogger.EARLY_LINES + 1
    assert lines[0].endswith(" INFO boot 0") and lines[-1].endswith(" INFO served")


def test_an_unwritable_directory_is_reported_once_and_nothing_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    log = FirmwareLog(blocker / "node-a")
    with caplog.at_level(logging.ERROR, logger="gateway.logs.firmware"):
        log.append(1, "one", 0)
        log.append(1, "two", 0)
    assert log.failed is not None
    assert len([r for r in caplog.records if "cannot write the firmware log" in r.message]) == 1
    assert log.files() == []
