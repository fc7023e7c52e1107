"""What `dotagent history` answers: runs, one run's output, per-schedule statistics.

Report objects with `to_json()` (the documented `--json` shapes, docs/cli.md); the CLI renders
them. Everything comes from the history database and the agents' logs, so it works whether
the daemon runs or not. Instants in JSON are ISO 8601 in the local zone, to the millisecond.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from dotagent.display import quote_name
from dotagent.errors import NotFoundError, UnsafeNameError
from dotagent.paths import Home
from dotagent.state.history import History, RunRecord
from dotagent.state.runstats import ScheduleStats

if TYPE_CHECKING:
    from dotagent.state.logread import RunText

__all__ = ["RUN_KEYS", "HistoryReport", "RunOutput", "StatsReport", "iso_ms", "list_runs",
           "manifest_schedules",
           "run_json", "run_output", "run_stats"]

# The keys of one run in `history --json`, in order (docs/cli.md).
RUN_KEYS = ("id", "agent", "schedule", "source", "started_at", "finished_at", "exit_code",
            "timed_out", "outcome", "attempt", "duration_seconds")


def iso_ms(epoch: float | None, zone: tzinfo) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, zone).isoformat(timespec="milliseconds")


def run_json(run: RunRecord, zone: tzinfo) -> dict[str, Any]:
    duration = run.duration_seconds
    return {
        "id": run.id, "agent": run.agent, "schedule": run.schedule, "source": run.source,
        "started_at": iso_ms(run.started_at, zone), "finished_at": iso_ms(run.finished_at, zone),
        "exit_code": run.exit_code, "timed_out": run.timed_out, "outcome": run.outcome,
        "attempt": run.attempt,
        "duration_seconds": None if duration is None else round(duration, 3),
    }


@dataclass(frozen=True)
class HistoryReport:
    """Runs, newest first."""

    runs: list[RunRecord]
    zone: tzinfo

    def to_json(self) -> list[dict[str, Any]]:
        return [run_json(r, self.zone) for r in self.runs]


@dataclass(frozen=True)
class StatsReport:
    """One entry per (agent, schedule), sorted by agent then schedule."""

    stats: list[ScheduleStats]

    def to_json(self) -> list[dict[str, Any]]:
        out = []
        for s in self.stats:
            entry = s.to_json()
            for key, digits in (("success_rate", 4), ("p50_seconds", 3), ("p95_seconds", 3)):
                if entry[key] is not None:
                    entry[key] = round(entry[key], digits)
            out.append(entry)
        return out


@dataclass(frozen=True)
class RunOutput:
    """One run and its output. `source` says where the output came from: `log` (its block in
    the agent's log, `files` naming the files read), `stderr_tail` (the log no longer holds
    it; history keeps the last 4 KiB of its stderr) or `none` (nothing is left)."""

    run: RunRecord
    zone: tzinfo
    source: str
    text: RunText | None

    @property
    def output(self) -> str:
        if self.text is not None:
            return "".join(line + "\n" for line in self.text.lines)
        if self.source == "stderr_tail" and self.run.stderr_tail:
            tail = self.run.stderr_tail
            return tail if tail.endswith("\n") else tail + "\n"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "run": run_json(self.run, self.zone),
            "source": self.source,
            "files": [] if self.text is None else list(self.text.files),
            "complete": self.text is not None and self.text.complete,
            "output": self.output,
        }


KnownSchedules = Callable[[str], "list[str] | None"]


def list_runs(home: Home, zone: tzinfo, *, agent: str | None = None,
              schedule: str | None = None, limit: int = 20, since: float | None = None,
              failed_only: bool = False,
              known: KnownSchedules | None = None) -> HistoryReport:
    """Runs newest first. When nothing matches and an `agent` (or its `schedule`) was named,
    NotFoundError unless the history or `known` (an agent's schedule ids from its manifest,
    None for no such agent; looked up only then) knows it."""
    history = _existing(home)
    if history is None:  # nothing ever ran here: a read command creates no database
        if agent is not None:
            _check_named(None, agent, schedule, known)
        return HistoryReport([], zone)
    with history:
        runs = history.query(agent=agent, schedule=schedule, limit=limit, since=since,
                             failed_only=failed_only)
        if not runs and agent is not None:
            _check_named(history, agent, schedule, known)
    return HistoryReport(runs, zone)


def _existing(home: Home) -> History | None:
    history = History(home)
    return history if history.path.exists() else None


def run_stats(home: Home, *, agent: str | None = None, schedule: str | None = None,
              since: float | None = None,
              known: KnownSchedules | None = None) -> StatsReport:
    history = _existing(home)
    if history is None:
        if agent is not None:
            _check_named(None, agent, schedule, known)
        return StatsReport([])
    with history:
        stats = history.stats(agent=agent, schedule=schedule, since=since)
        if not stats and agent is not None:
            _check_named(history, agent, schedule, known)
    return StatsReport(stats)


def _check_named(history: History | None, agent: str, schedule: str | None,
                 known: KnownSchedules | None) -> None:
    manifest = known(agent) if known is not None else None
    recorded = [] if history is None else history.schedules_of(agent)
    if manifest is None and not recorded:
        raise NotFoundError(f"agent not found: {quote_name(agent)} (no manifest declares it "
                            "and the history has no run of it)")
    ids = sorted(set(manifest or []) | set(recorded))
    if schedule is not None and schedule not in ids:
        shown = ", ".join(quote_name(i) for i in ids) or "none"
        raise NotFoundError(f"schedule id not found: {quote_name(schedule)} (agent "
                            f"{quote_name(agent)} has: {shown})")


def run_output(home: Home, zone: tzinfo, run_id: int) -> RunOutput:
    """Run `run_id` and its output (see `RunOutput`); NotFoundError for an unknown id."""
    history = _existing(home)
    run = None
    if history is not None:
        with history:
            run = history.get(run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} is not in the history (`dotagent history` lists "
                            "the ids)")
    from dotagent.state.logread import find_run

    text: RunText | None = None
    if run.log_start is not None or run.log_path is not None:
        try:
            # The log of the agent's name under this home, whatever path the row recorded
            # (a home that moved): nothing outside the state directory is read.
            active = home.agent_log_file(run.agent)
        except UnsafeNameError:
            active = None
        if active is not None:
            text = find_run(active, started_at=run.started_at, schedule=run.schedule,
                            slug=run.slug, log_start=run.log_start, exit_code=run.exit_code)
    if text is not None:
        source = "log"
    elif run.stderr_tail:
        source = "stderr_tail"
    else:
        source = "none"
    return RunOutput(run, zone, source, text)


def manifest_schedules(found: Any) -> KnownSchedules:
    """`known` for `list_runs`/`run_stats` from a discovery result."""

    def known(agent: str) -> list[str] | None:
        loaded = found.agents.get(agent)
        return None if loaded is None else [s.id for s in loaded.manifest.schedules]

    return known
