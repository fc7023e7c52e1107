"""What `status`, `inspect` and `next` answer, as report objects with `to_json()`: the CLI
renders them, and the socket API and MCP will return the same objects.

Pure reads of the state files and the history database, so they answer whether or not the
daemon runs, and say which. They see the daemon's agents (S15.8). Health is the scheduler's
one judge (`schedule.windows.health`), given the state the daemon decides from
(`state.windows.schedule_state`), with three things only a reader of the whole state knows:
- a schedule whose latest finished run failed (any source: daemon, `run-now`, `run`,
  `tick`) is `failing`, never `ok` or `degraded`;
- a paused schedule (`state/paused.json`) is `paused`: not stale, not failing, no next run
  while the pause lasts;
- `monitor = false` agents are left out (the daemon neither runs nor watches them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from dotagent.api.agents import AgentSet, load_agents
from dotagent.api.judge import DaemonInfo, Judged, daemon_info, epoch_iso, iso, open_history
from dotagent.paths import Home
from dotagent.state.pause import Pause

if TYPE_CHECKING:
    from dotagent.api.inspect import InspectReport, inspect_report
    from dotagent.api.upcoming import Fire, NextReport, next_report

# `inspect_report` and `next_report` (and their report types) are served from here too, but
# imported on first use: `status` is timed with 500 agents and needs neither.
_LAZY = {"InspectReport": "dotagent.api.inspect", "inspect_report": "dotagent.api.inspect",
         "Fire": "dotagent.api.upcoming", "NextReport": "dotagent.api.upcoming",
         "next_report": "dotagent.api.upcoming"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

__all__ = [
    "STATE_ORDER",
    "DaemonInfo",
    "Fire",
    "InspectReport",
    "LiveRun",
    "NextReport",
    "StatusReport",
    "StatusRow",
    "daemon_info",
    "inspect_report",
    "next_report",
    "status_report",
]

# Failing first (SPEC S10), paused before the healthy ones.
STATE_ORDER = ("failing", "degraded", "stale", "paused", "ok")


# --------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    agent: str
    schedule: str
    state: str
    reason: str
    last_run: datetime | None  # when the latest finished run ended
    last_outcome: str | None
    last_exit_code: int | None
    next_run: datetime | None
    paused: Pause | None
    snoozed_until: int | None

    def to_json(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "agent": self.agent, "schedule": self.schedule, "state": self.state,
            "reason": self.reason, "last_run": iso(self.last_run, zone),
            "last_outcome": self.last_outcome, "last_exit_code": self.last_exit_code,
            "next_run": iso(self.next_run, zone),
            "paused": False if self.paused is None else {
                "since": epoch_iso(self.paused.since, zone),
                "until": epoch_iso(self.paused.until, zone)},
            "snoozed_until": epoch_iso(self.snoozed_until, zone),
        }


@dataclass(frozen=True)
class LiveRun:
    """A process the daemon supervises now (`state/supervisor.json`), aged as of `now`."""

    agent: str
    schedule: str | None
    kind: str
    pid: int
    label: str
    started_at: datetime
    age_seconds: int
    deadline_seconds: int
    deadline_pct: int

    def to_json(self, zone: tzinfo) -> dict[str, Any]:
        return {"agent": self.agent, "schedule": self.schedule, "kind": self.kind,
                "pid": self.pid, "label": self.label,
                "started_at": iso(self.started_at, zone), "age_seconds": self.age_seconds,
                "deadline_seconds": self.deadline_seconds, "deadline_pct": self.deadline_pct}


@dataclass
class StatusReport:
    home: str
    now: datetime
    zone: tzinfo
    daemon: DaemonInfo
    rows: list[StatusRow]
    running: list[LiveRun]
    problems: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {"total": len(self.rows), **{s: 0 for s in STATE_ORDER}}
        for row in self.rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"home": self.home, "now": iso(self.now, self.zone),
                "daemon": self.daemon.to_json(), "counts": self.counts,
                "schedules": [r.to_json(self.zone) for r in self.rows],
                "running": [r.to_json(self.zone) for r in self.running],
                "problems": self.problems, "notes": self.notes}


def status_report(home: Home, env: Mapping[str, str], now: datetime, *,
                  zone: tzinfo | None = None, agents: AgentSet | None = None) -> StatusReport:
    """Every schedule of every monitored agent, judged at `now`, failing first."""
    from dotagent.api.judge import judge_all
    from dotagent.errors import DotagentError
    from dotagent.localzone import local_zone

    zone = zone or local_zone(env)
    agents = agents or load_agents(home, env)
    notes: list[str] = []
    history = open_history(home)
    try:
        judged = judge_all(home, [a for a in agents.agents.values() if a.monitor], zone,
                           now, history=history)
    except DotagentError as exc:  # an unreadable history: judge without it, and say so
        notes.append(f"history not used: {exc.message}")
        judged = judge_all(home, [a for a in agents.agents.values() if a.monitor], zone,
                           now, history=None)
    finally:
        if history is not None:
            history.close()
    from dotagent.state.pause import Pauses

    paused_problem = Pauses(home).problem()
    if paused_problem is not None:
        notes.append(paused_problem)
    daemon = daemon_info(home, zone)
    running: list[LiveRun] = []
    if daemon.running:
        running, problem = _live_runs(home, now)
        if problem:
            notes.append(problem)
    else:
        notes.extend(_orphans(home, zone))
    live = {(r.agent, r.schedule): r for r in running
            if r.kind in ("agent", "persistent_agent")}
    rows = [_while_running(_row(j), j, live.get((j.agent.name, j.schedule.id)), now, zone)
            for j in judged]
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    rows.sort(key=lambda r: (rank.get(r.state, len(rank)), r.agent, r.schedule))
    return StatusReport(str(home.root), now, zone, daemon, rows, running, agents.problems,
                        notes)


def _row(j: Judged) -> StatusRow:
    from dotagent.clock import from_epoch

    last = j.last
    if last is not None:
        when = last.finished_at if last.finished_at is not None else last.started_at
        last_run: datetime | None = from_epoch(when)
        outcome, code = last.outcome, last.exit_code
    elif j.heartbeat is not None and j.heartbeat.finished_at is not None:
        last_run = from_epoch(j.heartbeat.finished_at)
        code = j.heartbeat.exit_code
        outcome = "ok" if j.schedule.policy.exits.succeeded(code) else "failed"
    else:
        last_run, outcome, code = None, None, None
    return StatusRow(j.agent.name, j.schedule.id, j.health.state, j.health.reason, last_run,
                     outcome, code, j.next_run, j.pause, j.snoozed_until)


def _while_running(row: StatusRow, j: Judged, run: LiveRun | None, now: datetime,
                   zone: tzinfo) -> StatusRow:
    """A schedule whose run is going on now. The window files only learn of an attempt when
    it ends, so its window (or one that came due during the run, which the daemon will skip
    as an overlap) reads as "has not run yet": while the run lasts, that is not degraded.
    Any other state stays (a retry in progress is still a failing window); the reason says
    that it runs."""
    if run is None:
        return row
    from dataclasses import replace

    from dotagent.schedule.windows import expected_at

    since = run.started_at.astimezone(zone).strftime("%H:%M:%S")
    doing = f"running since {since} ({run.age_seconds} s of its {run.deadline_seconds} s)"
    exp = expected_at(j.rule, j.state, now)
    window = j.state.window
    pending = exp is not None and (window is None or window.expected_at < exp
                                   or window.attempts == 0)
    if row.state == "degraded" and pending:
        assert exp is not None
        if exp > run.started_at + timedelta(seconds=1):
            at = exp.astimezone(zone).strftime("%H:%M:%S")
            doing += f"; the window of {at} came due meanwhile and is skipped (overlap)"
        return replace(row, state="ok", reason=doing)
    return replace(row, reason=f"{doing}; {row.reason}")


def _orphans(home: Home, zone: tzinfo) -> list[str]:
    """With no daemon running, the processes a daemon that died without cleaning up
    (`kill -9`, a crash) left running, still provably the ones it recorded (the checks the
    next daemon's reaping makes): nobody holds their deadlines."""
    import os

    from dotagent.errors import DotagentError
    from dotagent.state.supervisor import SupervisorSnapshot, classify, probe_process

    try:
        records = SupervisorSnapshot(home).read()
    except DotagentError:
        return []
    alive = [r for r in records if classify(r, probe_process(r.pid), os.getpid()) == "reap"]
    if not alive:
        return []
    shown = ", ".join(f"{r.label} (pid {r.pid}, since "
                      f"{r.started_at.astimezone(zone).strftime('%m-%d %H:%M')})"
                      for r in alive)
    return [f"still running, left by a daemon that did not stop cleanly: {shown}; nobody "
            "holds their deadlines until the next `dotagent daemon` stops them at its start"]


def _live_runs(home: Home, now: datetime) -> tuple[list[LiveRun], str | None]:
    from dotagent.errors import DotagentError
    from dotagent.state.supervisor import SupervisorSnapshot

    try:
        records = SupervisorSnapshot(home).read()
    except DotagentError as exc:
        return [], f"live runs unknown: {exc.message}"
    out = []
    for r in records:
        a = r.aged(now)
        out.append(LiveRun(a.owner.agent, a.owner.schedule, a.kind, a.pid, a.label,
                           a.started_at, a.age_seconds, a.deadline_seconds, a.deadline_pct))
    out.sort(key=lambda x: x.started_at)
    return out, None
