"""`next`: the coming fires of every monitored schedule, merged in time order (systemd's
`list-timers`).

A schedule's fires are the instants the daemon will dispatch it: its calendar windows plus
its fixed delay (`jitter_seconds`), or an interval's `last start + k × interval`. The first
one is the scheduler's own `next_due` — which may be sooner than the next window: `due`
(a window or first run is due now: the daemon dispatches it at once, or would if it ran), or
`retry` (a failed attempt's backoff ends). A paused schedule has no fire while its pause
lasts. At most `MAX_FIRES` fires are listed (a schedule firing every second fills hours).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from dotagent.api.agents import AgentSet, load_agents
from dotagent.api.fires import MAX_FIRES, fires
from dotagent.api.judge import Judged, from_epoch, iso
from dotagent.paths import Home

__all__ = ["DEFAULT_COUNT", "MAX_FIRES", "Fire", "NextReport", "fires", "next_report"]

DEFAULT_COUNT = 10


@dataclass(frozen=True)
class Fire:
    agent: str
    schedule: str
    at: datetime
    kind: str  # window | due | retry
    in_seconds: float

    def to_json(self, zone: tzinfo) -> dict[str, Any]:
        return {"agent": self.agent, "schedule": self.schedule, "at": iso(self.at, zone),
                "in_seconds": self.in_seconds, "kind": self.kind}


@dataclass
class NextReport:
    now: datetime
    zone: tzinfo
    fires: list[Fire]
    truncated: bool = False  # MAX_FIRES reached before the horizon

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json(self.zone) for f in self.fires]


def next_report(home: Home, env: Mapping[str, str], now: datetime, *,
                count: int | None = None, hours: float | None = None,
                zone: tzinfo | None = None, agents: AgentSet | None = None) -> NextReport:
    """The first `count` fires across all agents (default DEFAULT_COUNT), or every fire in
    the next `hours` hours (at most MAX_FIRES)."""
    from dotagent.api.judge import judge_all
    from dotagent.localzone import local_zone

    zone = zone or local_zone(env)
    agents = agents or load_agents(home, env)
    judged = judge_all(home, [a for a in agents.agents.values() if a.monitor], zone, now,
                       history=None)
    limit = MAX_FIRES if hours is not None else min(DEFAULT_COUNT if count is None else count,
                                                    MAX_FIRES)
    horizon = None if hours is None else _horizon(now, hours)
    merged = heapq.merge(*(_tagged(j, now) for j in judged), key=lambda t: t[0])
    out: list[Fire] = []
    truncated = False
    for at, agent, schedule, kind in merged:
        if horizon is not None and at > horizon:
            break
        if len(out) >= limit:
            truncated = hours is not None or (count is not None and count > MAX_FIRES)
            break
        secs = round(max(0.0, (at - now).total_seconds()), 3)
        out.append(Fire(agent, schedule, at, kind, secs))
    return NextReport(now, zone, out, truncated)


def _horizon(now: datetime, hours: float) -> datetime | None:
    """`now + hours`, or None (no horizon but MAX_FIRES) past the last instant datetime
    holds (`--hours 1e9`, `inf`)."""
    try:
        return now + timedelta(hours=hours)
    except OverflowError:
        return None


def _tagged(j: Judged, now: datetime) -> Iterator[tuple[datetime, str, str, str]]:
    pause = j.pause
    if pause is not None and pause.until is None:
        return
    not_before = None if pause is None or pause.until is None else from_epoch(pause.until)
    for at, kind in fires(j.rule, j.state, j.schedule.policy, now, not_before):
        yield at, j.agent.name, j.schedule.id, kind
