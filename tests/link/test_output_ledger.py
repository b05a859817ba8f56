"""`OutputLedger` on its own: which reports are taken, what is delivered, what stays held.

Pure and clock-injected, so these run in milliseconds; the same rules are exercised end to end
through real ptys in test_integrity.py, test_paging.py and tests/e2e/test_foreign_output.py."""

from __future__ import annotations

from gateway.link.events import TaskOutput
from gateway.link.output_ledger import (
    DROP_WARN_WINDOW,
    DROP_WARNINGS_PER_WINDOW,
    MAX_TRAILING_TASKS,
    MAX_UNLISTED_OUTPUT_TASKS,
    OutputLedger,
)

STDOUT, STDERR = 1, 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ledger_with(*running: str, clock: Clock | None = None) -> OutputLedger:
    """A ledger past its first task list, knowing `running` as tasks started here."""
    ledger = OutputLedger(clock or Clock())
    ledger.listed((), gone=(), adopted=())
    for task_id in running:
        ledger.started_here(task_id)
    return ledger


def test_new_output_is_delivered_and_held_until_persisted() -> None:
    ledger = ledger_with("t")
    first = ledger.output("t", STDOUT, 0, b"abc", receipt=1)
    second = ledger.output("t", STDOUT, 3, b"de", receipt=2)
    assert first.deliver == TaskOutput("t", "stdout", 0, b"abc")
    assert second.deliver == TaskOutput("t", "stdout", 3, b"de")
    assert not first.release and not second.release
    assert ledger.unpersisted_bytes() == 5
    assert ledger.persisted("t", "stdout", 2) == []  # the first frame ends at 3
    assert ledger.persisted("other", "stdout", 5) == []  # another task
    assert ledger.persisted("t", "stdout", 3) == [1]
    assert ledger.persisted("t", "stdout", 5) == [2]
    assert ledger.unpersisted_bytes() == 0
    assert ledger.sizes()["held"] == 0


def test_without_receipt_nothing_is_held() -> None:
    ledger = ledger_with("t")
    decision = ledger.output("t", STDERR, 0, b"x", receipt=None)
    assert decision.deliver == TaskOutput("t", "stderr", 0, b"x")
    assert ledger.sizes()["held"] == 0


def test_repeats_are_trimmed_and_released_only_once_persisted() -> None:
    ledger = ledger_with("t")
    ledger.output("t", STDOUT, 0, b"abcd", receipt=1)
    overlap = ledger.output("t", STDOUT, 2, b"cdef", receipt=2)
    assert overlap.deliver == TaskOutput("t", "stdout", 4, b"ef")
    repeat = ledger.output("t", STDOUT, 0, b"ab", receipt=3)
    assert repeat.deliver is None and not repeat.release  # not persisted yet: held
    assert sorted(ledger.persisted("t", "stdout", 6)) == [1, 2, 3]
    again = ledger.output("t", STDOUT, 0, b"ab", receipt=4)
    assert again.deliver is None and again.release  # persisted already: released at once


def test_a_gap_in_our_own_task_is_reported_not_in_an_adopted_one() -> None:
    ledger = ledger_with("ours")
    gap = ledger.output("ours", STDOUT, 10, b"x", receipt=None)
    assert gap.gap == (0, 10) and gap.deliver == TaskOutput("ours", "stdout", 10, b"x")
    ledger.listed(("adopted",), gone=(), adopted=("adopted",))
    assert ledger.output("adopted", STDOUT, 10, b"x", receipt=None).gap is None


def test_unknown_stream_is_released_without_delivery() -> None:
    ledger = ledger_with("t")
    decision = ledger.output("t", 7, 0, b"x", receipt=1)
    assert decision.release and decision.deliver is None and decision.dropped is None


def test_a_fresh_sequence_space_voids_held_receipts() -> None:
    ledger = ledger_with("t")
    ledger.output("t", STDOUT, 0, b"abc", receipt=1)
    ledger.new_sequence_space()
    assert ledger.persisted("t", "stdout", 3) == []


def test_unknown_ids_are_taken_only_before_the_first_list_and_only_so_many() -> None:
    ledger = OutputLedger(Clock())
    for n in range(MAX_UNLISTED_OUTPUT_TASKS):
        assert ledger.output(f"kept-{n}", STDOUT, 0, b"x", receipt=n + 1).deliver is not None
    over = ledger.output("one-too-many", STDOUT, 0, b"xyz", receipt=9999)
    assert over.release and over.deliver is None
    assert over.dropped is not None and over.dropped.what == "output"
    assert ledger.dropped_reports == 1 and ledger.dropped_output_bytes == 3

    after = ledger_with()
    late = after.output("stranger", STDOUT, 0, b"x", receipt=1)
    assert late.dropped is not None and late.release
    assert after.start_report("stranger", is_reply=False) is not None
    assert after.dropped_reports == 2 and after.sizes()["tasks"] == 0


def test_a_start_report_is_taken_when_it_answers_us_or_names_a_known_task() -> None:
    ledger = ledger_with()
    assert ledger.start_report("asked", is_reply=True) is None
    ledger.listed(("listed",), gone=(), adopted=())
    assert ledger.start_report("listed", is_reply=False) is None
    assert ledger.known() == {"asked": True, "listed": True}


def test_late_output_of_exited_and_listed_tasks_is_kept_boundedly() -> None:
    ledger = ledger_with("t")
    assert ledger.exit_report("t")
    assert not ledger.exit_report("t")  # a repeated report is not news
    late = ledger.output("t", STDOUT, 0, b"late", receipt=None)
    assert late.deliver == TaskOutput("t", "stdout", 0, b"late")
    assert ledger.known() == {"t": False}
    for n in range(MAX_TRAILING_TASKS + 10):
        ledger.gone(f"old-{n}")
        ledger.output(f"old-{n}", STDOUT, 0, b"x", receipt=None)
    assert ledger.sizes()["trailing"] == MAX_TRAILING_TASKS
    assert ledger.sizes()["tasks"] == MAX_TRAILING_TASKS


def test_restarting_an_exited_id_makes_it_run_again() -> None:
    ledger = ledger_with("t")
    ledger.exit_report("t")
    ledger.starting("t")
    ledger.started_here("t")
    assert ledger.known() == {"t": True}
    assert not ledger.exit_reported("t")


def test_drop_warnings_are_once_per_id_and_rate_limited_by_the_clock() -> None:
    clock = Clock()
    ledger = ledger_with(clock=clock)
    warned = [ledger.output(f"x{n}", STDOUT, 0, b"", None).dropped for n in range(20)]
    assert [d.warn for d in warned if d is not None].count(True) == DROP_WARNINGS_PER_WINDOW
    repeat = ledger.output("x0", STDOUT, 0, b"", None).dropped
    assert repeat is not None and not repeat.warn
    clock.now += DROP_WARN_WINDOW
    fresh = ledger.output("new", STDOUT, 0, b"", None).dropped
    assert fresh is not None and fresh.warn
    assert ledger.dropped_reports == 22


def test_reports_of_an_unanswered_start_are_ours_until_the_next_task_list() -> None:
    ledger = ledger_with()
    ledger.starting("t")
    ledger.start_unanswered("t")  # the link was lost before the device answered
    assert ledger.output("t", STDOUT, 0, b"x", receipt=None).deliver is not None
    assert ledger.start_report("t", is_reply=False) is None
    assert ledger.known() == {"t": True} and ledger.sizes()["unanswered_starts"] == 0
    ledger.start_unanswered("u")
    ledger.listed((), gone=(), adopted=())  # the list settles it: "u" never ran
    assert ledger.start_report("u", is_reply=False) is not None
