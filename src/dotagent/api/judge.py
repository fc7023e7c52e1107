"""Judging one schedule for the reports: the state the daemon decides from
(`state.windows.schedule_state`'s pieces, read once for all schedules), the scheduler's one
health judge (`schedule.windows.health`), and what only a reader of the whole state adds —
the latest finished run (history), pauses, snoozes — plus whether a daemon runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from dotagent.api.agents import AgentView, ScheduleView
from dotagent.api.fires import fires
from dotagent.paths import Home
from dotagent.schedule.windows import Health, Rule, ScheduleState, health
from dotagent.state.history import FAILED_OUTCOMES, History, RunRecord
from dotagent.state.pause import Pause, Pauses

__all__ = ["DaemonInfo", "Judged", "daemon_info", "epoch_iso", "from_epoch", "iso",
           "judge_all", "open_history"]


def iso(moment: datetime | None, zone: tzinfo) -> str | None:
    """ISO 8601 in `zone` with a colon offset; fractional seconds only when non-zero."""
    return None if moment is None else moment.astimezone(zone).isoformat()


def epoch_iso(seconds: float | None, zone: tzinfo) -> str | None:
    return None if seconds is None else iso(from_epoch(seconds), zone)


def from_epoch(seconds: float) -> datetime:
    from dotagent.clock import from_epoch as convert

    return convert(seconds)


def open_history(home: Home) -> History | None:
    """The history database if there is one (a read never creates it)."""
    path = home.state_dir / "history.sqlite3"
    return History(home) if path.is_file() else None


# --------------------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DaemonInfo:
    running: bool
    pid: int | None = None
    since: datetime | None = None
    zone: tzinfo | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "pid": self.pid,
                "since": None if self.since is None or self.zone is None
                else iso(self.since, self.zone)}


def daemon_info(home: Home, zone: tzinfo) -> DaemonInfo:
    """Whether a daemon serves `home` (its lock is held), its pid and when it started (the
    process's start time; the pid file's mtime where /proc cannot say)."""
    from dotagent.daemon.pidfile import running_daemon
    from dotagent.state.supervisor import ProcessFacts, probe_process

    pid = running_daemon(home)
    if pid is None:
        return DaemonInfo(False, zone=zone)
    if pid == 0:  # the lock is held but the pid file is unreadable
        return DaemonInfo(True, zone=zone)
    since: datetime | None = None
    facts = probe_process(pid)
    if isinstance(facts, ProcessFacts):
        since = from_epoch(facts.started_at)
    else:
        try:
            since = from_epoch((home.state_dir / "daemon.pid").stat().st_mtime)
        except OSError:
            since = None
    return DaemonInfo(True, pid, since, zone=zone)


# --------------------------------------------------------------------------------------
# One schedule, judged
# --------------------------------------------------------------------------------------
class _OnceRead(Pauses):
    """`Pauses` reading `paused.json` once for the whole report, not once per schedule."""

    _cached: dict[str, Pause] | None = None

    def table(self) -> dict[str, Pause]:
        if self._cached is None:
            self._cached = super().table()
        return self._cached


@dataclass(frozen=True)
class Judged:
    """A schedule of an agent with everything the reports say about it."""

    agent: AgentView
    schedule: ScheduleView
    rule: Rule
    state: ScheduleState
    health: Health
    last: RunRecord | None
    pause: Pause | None
    snoozed_until: int | None
    next_run: datetime | None
    heartbeat: Any = None  # state.heartbeat.Heartbeat | None


def judge_all(home: Home, agents: list[AgentView], zone: tzinfo, now: datetime, *,
              history: History | None) -> list[Judged]:
    """Judge every schedule of `agents` at `now` (one scan of the windows directory, one
    read of each heartbeat, one indexed history lookup per schedule)."""
    from dotagent.alerts.snooze import Snoozes
    from dotagent.schedule.rules import rule_for
    from dotagent.state.heartbeat import HeartbeatStore
    from dotagent.state.windows import WindowStore, state_of

    keys = [(a, s) for a in agents for s in a.schedules]
    windows = WindowStore(home, zone=zone).latest_many([(a.name, s.slug) for a, s in keys])
    beats = HeartbeatStore(home).read_many([(a.name, s.slug) for a, s in keys])
    latest = history.latest_finished([(a.name, s.id) for a, s in keys]) if history else {}
    pauses = _OnceRead(home)
    snoozes = Snoozes(home).table()
    ts = now.timestamp()
    out = []
    for agent, sched in keys:
        record = windows.get((agent.name, sched.slug))
        beat = beats.get((agent.name, sched.slug))
        state = state_of(beat, record.state if record is not None else None)
        rule = rule_for(sched, zone)  # type: ignore[arg-type]
        h = health(rule, state, sched.policy, now)
        last = latest.get((agent.name, sched.id))
        h = _latest_run_counts(h, last, beat, sched, zone)
        pause = pauses.active(agent.name, sched.id, ts)
        snooze = max((t for t in (snoozes.get(agent.name),
                                  snoozes.get(f"{agent.name}/{sched.id}"))
                      if t is not None and t > ts), default=None)
        nxt: datetime | None = None
        if pause is not None:
            h = Health("paused", _paused_reason(pause, zone))  # type: ignore[arg-type]
        if pause is None or pause.until is not None:
            after = None if pause is None or pause.until is None else from_epoch(pause.until)
            nxt = next((at for at, _ in fires(rule, state, sched.policy, now, after)), None)
        out.append(Judged(agent, sched, rule, state, h, last, pause, snooze, nxt, beat))
    return out


def _paused_reason(pause: Pause, zone: tzinfo) -> str:
    since = from_epoch(pause.since).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if pause.until is None:
        return f"paused since {since}, until resumed"
    until = from_epoch(pause.until).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return f"paused since {since}, until {until}"


def _latest_run_counts(h: Health, last: RunRecord | None, beat: Any, sched: ScheduleView,
                       zone: tzinfo) -> Health:
    """A schedule whose latest finished run failed is never ok (nor degraded): the windows
    only know the daemon's runs, a failed `run-now` after them is news (docs/decisions.md,
    "status: the latest run decides between ok and failing")."""
    if h.state not in ("ok", "degraded"):
        return h
    if last is not None:
        failed = last.outcome in FAILED_OUTCOMES
        code, when, how = last.exit_code, last.finished_at or last.started_at, last.outcome
        source = last.source
    elif beat is not None and beat.finished_at is not None:
        # No history row (an upstream home, or a run before history existed): the heartbeat.
        failed = not sched.policy.exits.succeeded(beat.exit_code)
        code, when, how, source = beat.exit_code, beat.finished_at, "failed", "heartbeat"
    else:
        return h
    if not failed:
        return h
    at = from_epoch(when).astimezone(zone).strftime("%m-%d %H:%M")
    what = {"timed_out": "timed out", "could_not_start": "could not start",
            "preflight_failed": "was stopped by a preflight check"}.get(how, "failed")
    exit_text = f", exit {code}" if code is not None and how != "preflight_failed" else ""
    return Health("failing", f"latest run {what} ({source} at {at}{exit_text})")
