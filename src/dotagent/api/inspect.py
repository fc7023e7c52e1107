"""`inspect NAME`: one agent in full — where its manifest is and whether it is the one first
seen, its effective policy after clamps, and per schedule its expression, next fires,
heartbeat, latest window and health; then its last runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from itertools import islice
from typing import Any

from dotagent.api.agents import AgentView, ScheduleView
from dotagent.api.judge import Judged, epoch_iso, iso
from dotagent.paths import Home
from dotagent.state.history import RunRecord

__all__ = ["DEFAULT_FIRES", "DEFAULT_RUNS", "InspectReport", "inspect_report", "run_json"]

DEFAULT_FIRES = 5
DEFAULT_RUNS = 10


def run_json(r: RunRecord, zone: tzinfo) -> dict[str, Any]:
    """One history row as `inspect` shows it (`history --json` keeps its own shape)."""
    return {"id": r.id, "schedule": r.schedule, "source": r.source, "attempt": r.attempt,
            "started_at": epoch_iso(r.started_at, zone),
            "finished_at": epoch_iso(r.finished_at, zone),
            "duration_seconds": None if r.duration_seconds is None
            else round(r.duration_seconds, 3),
            "exit_code": r.exit_code, "timed_out": r.timed_out, "outcome": r.outcome}


def _policy_json(s: ScheduleView) -> dict[str, Any]:
    p = s.policy
    return {"max_retries": p.max_retries, "retry_backoff_minutes": list(p.retry_backoff_minutes),
            "stale_after_minutes": p.stale_after_minutes, "jitter_seconds": s.jitter_seconds,
            "delay_seconds": round(p.delay.total_seconds(), 3),
            "success_exit_codes": sorted(p.exits.success_exit_codes),
            "no_retry_exit_codes": sorted(p.exits.no_retry_exit_codes)}


@dataclass
class ScheduleDetail:
    judged: Judged
    next_fires: list[tuple[datetime, str]]

    def to_json(self, zone: tzinfo, monitored: bool) -> dict[str, Any]:
        j, s = self.judged, self.judged.schedule
        w = j.state.window
        return {
            "id": s.id, "slug": s.slug, "type": s.type, "expression": s.shown,
            "timezone": s.timezone, "args": list(s.args), "policy": _policy_json(s),
            "state": j.health.state if monitored else None,
            "reason": j.health.reason if monitored else None,
            "paused": False if j.pause is None else {
                "since": epoch_iso(j.pause.since, zone),
                "until": epoch_iso(j.pause.until, zone)},
            "snoozed_until": epoch_iso(j.snoozed_until, zone),
            "next_fires": [{"at": iso(at, zone), "kind": kind} for at, kind in self.next_fires],
            "heartbeat": None if j.heartbeat is None else j.heartbeat.to_json(),
            "window": None if w is None else {
                "expected_at": iso(w.expected_at, zone), "attempts": w.attempts,
                "last_attempt_at": iso(w.last_attempt_at, zone),
                "last_exit_code": w.last_exit_code, "given_up": w.given_up,
                "missed": w.missed},
        }


@dataclass
class InspectReport:
    agent: AgentView
    zone: tzinfo
    now: datetime
    known: dict[str, Any] | None  # its known_manifests.json entry
    schedules: list[ScheduleDetail]
    runs: list[RunRecord]
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool | None:
        """Whether the manifest differs from the one recorded (None: never recorded)."""
        return None if self.known is None else self.known.get("sha256") != self.agent.sha256

    def to_json(self) -> dict[str, Any]:
        a, k = self.agent, self.known
        return {
            "agent": a.name, "description": a.description, "path": a.path,
            "sha256": a.sha256,
            "known": None if k is None else {
                "sha256": k.get("sha256"), "first_seen": k.get("first_seen_at_iso"),
                "last_seen": k.get("last_seen_at_iso"), "matches": not self.drifted},
            "monitor": a.monitor, "timeout_seconds": a.timeout_seconds,
            "clamps": [{"field": f, "declared": d, "effective": e} for f, d, e in a.clamps],
            "schedules": [s.to_json(self.zone, a.monitor) for s in self.schedules],
            "runs": [run_json(r, self.zone) for r in self.runs],
            "notes": self.notes,
        }


def inspect_report(home: Home, env: Mapping[str, str], name: str, now: datetime, *,
                   fires: int = DEFAULT_FIRES, runs: int = DEFAULT_RUNS,
                   zone: tzinfo | None = None) -> InspectReport:
    """Raises NotFoundError for a name nothing claims, ConfigError (with the manifest's
    errors) for a name a broken manifest claims."""
    from dotagent.api.agents import view_of
    from dotagent.api.judge import judge_all, open_history
    from dotagent.api.upcoming import fires as fires_of
    from dotagent.discovery import discover
    from dotagent.errors import DotagentError
    from dotagent.localzone import local_zone
    from dotagent.machineid import jitter_salt
    from dotagent.security.manifests import load_cache

    zone = zone or local_zone(env)
    loaded = discover(dict(env), include_cwd=False).require(name)
    view = view_of(loaded, jitter_salt(home))
    cache, _ = load_cache(home)
    entries = cache.get("entries") if cache else None
    known = entries.get(view.name) if isinstance(entries, dict) else None
    notes: list[str] = []
    history = open_history(home)
    rows: list[RunRecord] = []
    try:
        try:
            judged = judge_all(home, [view], zone, now, history=history)
            if history is not None:
                rows = history.query(agent=view.name, limit=runs)
        except DotagentError as exc:
            notes.append(f"history not used: {exc.message}")
            judged = judge_all(home, [view], zone, now, history=None)
    finally:
        if history is not None:
            history.close()
    details = []
    for j in judged:
        until = None if j.pause is None or j.pause.until is None else j.pause.until
        paused_for_ever = j.pause is not None and until is None
        from dotagent.api.judge import from_epoch

        upcoming = [] if paused_for_ever else list(islice(
            fires_of(j.rule, j.state, j.schedule.policy, now,
                     None if until is None else from_epoch(until)), fires))
        details.append(ScheduleDetail(j, upcoming))
    return InspectReport(view, zone, now, known if isinstance(known, dict) else None,
                         details, rows, notes)
