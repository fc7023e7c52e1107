"""Duration anomalies: a successful run that took more than 3× its p95, or less than a tenth
of its p50, measured over the schedule's last 20 successful runs before it.

Pure over history rows (`state.history.RunRecord`). Decisions (docs/decisions.md):
- the baseline is the last `WINDOW` runs with outcome `ok` before this one — failures end
  early or time out, and would make every later success look odd;
- at least `MIN_RUNS` of them, or nothing is judged;
- the difference must also be at least `MIN_DIFFERENCE_SECONDS`, so sub-second jitter of a
  quick job never fires.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from dotagent.state.history import RunRecord

__all__ = ["MIN_RUNS", "WINDOW", "Anomaly", "baseline", "check", "check_run"]

WINDOW = 20
MIN_RUNS = 5
SLOW_FACTOR = 3.0
FAST_FRACTION = 0.1
MIN_DIFFERENCE_SECONDS = 1.0


@dataclass(frozen=True)
class Anomaly:
    kind: Literal["slow", "fast"]
    duration: float
    p50: float
    p95: float
    runs: int

    def reason(self) -> str:
        if self.kind == "slow":
            return (f"took {_secs(self.duration)}, more than {SLOW_FACTOR:g}× its p95 of "
                    f"{_secs(self.p95)} over its last {self.runs} successful runs")
        return (f"took {_secs(self.duration)}, less than a tenth of its p50 of "
                f"{_secs(self.p50)} over its last {self.runs} successful runs")

    def text(self, agent: str, schedule: str) -> str:
        return f"⏱️ {agent}/{schedule} {self.reason()}"


def _secs(value: float) -> str:
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def _rank(ordered: list[float], fraction: float) -> float:
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def check(duration: float, previous: Iterable[float]) -> Anomaly | None:
    """Judge `duration` against the previous successful durations (newest first or any
    order; at most the first WINDOW are used)."""
    prior = sorted(list(previous)[:WINDOW])
    if len(prior) < MIN_RUNS:
        return None
    p50, p95 = _rank(prior, 0.50), _rank(prior, 0.95)
    if duration > SLOW_FACTOR * p95 and duration - p95 >= MIN_DIFFERENCE_SECONDS:
        return Anomaly("slow", duration, p50, p95, len(prior))
    if duration < FAST_FRACTION * p50 and p50 - duration >= MIN_DIFFERENCE_SECONDS:
        return Anomaly("fast", duration, p50, p95, len(prior))
    return None


def baseline(rows: Iterable[RunRecord], run_id: int) -> list[float]:
    """The durations of the successful finished runs other than `run_id`, in the order given
    (History.query gives newest first)."""
    return [r.duration_seconds for r in rows
            if r.id != run_id and r.outcome == "ok" and r.duration_seconds is not None]


def check_run(run: RunRecord, rows: Iterable[RunRecord]) -> Anomaly | None:
    """`run` (finished, ok) against `rows` (the schedule's history, newest first)."""
    if run.outcome != "ok" or run.duration_seconds is None:
        return None
    prior = [r for r in rows if r.started_at <= run.started_at]
    return check(run.duration_seconds, baseline(prior, run.id))
