"""What a soak run found (`SoakReport`), the check of one pod's log, and the printed summary.

The invariants are listed in bench/soak.py, which runs the soak and fills the report.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from bench.common import say


@dataclasses.dataclass
class SoakReport:
    duration_s: float = 0.0
    devices: int = 0
    pods_created: int = 0
    pods_succeeded: int = 0
    pods_lost: int = 0  # their task died with a device reboot: a prefix of the log is expected
    pods_failed_other: list[str] = dataclasses.field(default_factory=list)
    lines_checked: int = 0
    log_errors: list[str] = dataclasses.field(default_factory=list)
    double_starts: list[str] = dataclasses.field(default_factory=list)
    chaos: dict[str, int] = dataclasses.field(default_factory=dict)
    nodes_not_ready: list[str] = dataclasses.field(default_factory=list)
    deletes_stuck: list[str] = dataclasses.field(default_factory=list)
    gateway_starts: int = 0
    rss_first_mb: float = 0.0
    rss_last_mb: float = 0.0
    rss_grew: bool = False

    @property
    def ok(self) -> bool:
        return not (
            self.log_errors
            or self.double_starts
            or self.nodes_not_ready
            or self.deletes_stuck
            or self.pods_failed_other
            or self.rss_grew
        )

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def check_log(lines: list[str], expected: int, *, complete: bool) -> str | None:
    """None when `lines` are 1..expected (or, not `complete`, a gap-free prefix of them)."""
    numbers: list[int] = []
    for line in lines:
        try:
            numbers.append(int(line))
        except ValueError:
            return f"unexpected line {line!r}"
    want = list(range(1, (expected if complete else len(numbers)) + 1))
    if numbers == want and len(numbers) <= expected:
        return None
    seen = Counter(numbers)
    dups = sorted(n for n, c in seen.items() if c > 1)
    holes = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
    disorder = next((i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1]), None)
    return (
        f"{len(numbers)} lines, expected {'all ' if complete else 'a prefix of '}{expected}; "
        f"duplicates {dups[:10]}, holes {holes[:10]}{'...' if len(holes) > 10 else ''}"
        + (
            ""
            if disorder is None
            else f", out of order at line {disorder + 1}: "
            f"{numbers[max(disorder - 3, 0) : disorder + 3]}"
        )
    )


def print_report(report: SoakReport) -> None:
    say(
        f"soak: {report.duration_s:.0f} s, {report.devices} devices, {report.gateway_starts} "
        f"gateway starts, chaos {dict(sorted(report.chaos.items()))}"
    )
    say(
        f"  pods: {report.pods_created} created, {report.pods_succeeded} succeeded, "
        f"{report.pods_lost} lost to reboots, {len(report.pods_failed_other)} failed otherwise"
    )
    say(f"  log lines checked: {report.lines_checked}; log errors: {len(report.log_errors)}")
    say(
        f"  double starts: {len(report.double_starts)}; nodes not Ready at the end: "
        f"{len(report.nodes_not_ready)}; pods never gone (unfinished or delete stuck): "
        f"{len(report.deletes_stuck)}"
    )
    say(
        f"  gateway RSS: {report.rss_first_mb} MB before (largest earlier), "
        f"{report.rss_last_mb} MB at the end"
        f"{' (GREW)' if report.rss_grew else ''}"
    )
    for label, items in (
        ("log error", report.log_errors),
        ("failed pod", report.pods_failed_other),
        ("double start", report.double_starts),
        ("not Ready", report.nodes_not_ready),
        ("stuck delete", report.deletes_stuck),
    ):
        for item in items[:20]:
            say(f"  {label}: {item}")
    say(f"soak: {'OK' if report.ok else 'FAILED'}")
