"""The gateway's log is bounded per message: a device that makes it warn per frame cannot
flood the disk or stall the loop on stderr."""

from __future__ import annotations

import logging

import pytest

from gateway.commands.log_limits import RepeatLimit
from gateway.commands.run import setup_logging


def record(msg: str, *args: object, name: str = "gateway.link.session") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_a_message_repeated_past_the_burst_is_counted_then_reported() -> None:
    now = [0.0]
    limit = RepeatLimit(burst=3, period_s=10.0, clock=lambda: now[0])
    gap = "%s: gap in output, %d..%d missing"
    passed = [limit.filter(record(gap, "emu-1", i, i + 10)) for i in range(1000)]
    assert passed.count(True) == 3
    other = record("%s: link lost", "emu-2")
    assert limit.filter(other), "another message has its own budget"
    assert limit.filter(record(gap, "emu-1", 1, 2, name="gateway.other")), "another logger too"
    now[0] = 10.0
    later = record(gap, "emu-1", 5, 6)
    assert limit.filter(later)
    assert (
        later.getMessage()
        == "emu-1: gap in output, 5..6 missing [997 more like this were not logged]"
    )
    again = record(gap, "emu-1", 7, 8)
    assert limit.filter(again) and "more like this" not in again.getMessage()


@pytest.mark.parametrize(("verbose", "limited"), [(0, True), (1, False)])
def test_the_limit_is_on_unless_verbose(verbose: int, limited: bool) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        setup_logging(verbose)
        filters = [f for h in root.handlers for f in h.filters]
        assert any(isinstance(f, RepeatLimit) for f in filters) is limited
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = saved
