"""Per-schedule run statistics over history rows (`History.stats`, `dotagent history --stats`).

Pure: takes the rows' (outcome, started_at, finished_at) and counts; no database here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FAILED_OUTCOMES", "ScheduleStats", "percentile", "schedule_stats"]

# The agent's own verdicts other than success. `interrupted` is not one of them: the run was
# cut short by dotagent stopping (or crashing), not judged.
FAILED_OUTCOMES: frozenset[str] = frozenset(
    ("failed", "timed_out", "preflight_failed", "could_not_start"))


@dataclass(frozen=True)
class ScheduleStats:
    """Attempts of one (agent, schedule). `success_rate` is ok / (ok + failed), over runs the
    agent finished (interrupted and running ones are not counted); durations are of every
    finished attempt, nearest-rank percentiles."""

    agent: str
    schedule: str
    runs: int
    ok: int
    failed: int
    interrupted: int
    running: int
    success_rate: float | None
    p50_seconds: float | None
    p95_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "schedule": self.schedule, "runs": self.runs, "ok": self.ok,
            "failed": self.failed, "interrupted": self.interrupted, "running": self.running,
            "success_rate": self.success_rate, "p50_seconds": self.p50_seconds,
            "p95_seconds": self.p95_seconds,
        }


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of a sorted sequence (None when it is empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def schedule_stats(agent: str, schedule: str,
                   rows: Sequence[tuple[str, float, float | None]]) -> ScheduleStats:
    """The statistics of one schedule's rows, each (outcome, started_at, finished_at)."""
    ok = sum(1 for outcome, _, _ in rows if outcome == "ok")
    failed = sum(1 for outcome, _, _ in rows if outcome in FAILED_OUTCOMES)
    interrupted = sum(1 for outcome, _, _ in rows if outcome == "interrupted")
    running = sum(1 for outcome, _, _ in rows if outcome == "running")
    durations = sorted(max(0.0, finished - started) for outcome, started, finished in rows
                       if finished is not None and outcome != "running")
    judged = ok + failed
    return ScheduleStats(
        agent=agent, schedule=schedule, runs=len(rows), ok=ok, failed=failed,
        interrupted=interrupted, running=running,
        success_rate=None if judged == 0 else ok / judged,
        p50_seconds=percentile(durations, 0.50), p95_seconds=percentile(durations, 0.95))
