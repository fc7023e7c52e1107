"""The daily summary (UPSTREAM-0.6 §8): its body, and when the daemon sends it.

Body:

    📊 Agents · 2026-12-02
    3/5 ok
    ❌ Failing:
      · backup/nightly — gave up after 4 attempts
    ⚠️ Degraded:
      · mail/poll — recovered after 2 attempts
    🕑 Stale:
      · report/weekly — never ran

The guard that makes it "once a day" is `state/notify/summary.json` (`{"sent_for":
"YYYY-MM-DD"}`), keyed on the date the delivery window opened (not on today), so a restart
inside the grace window does not send it twice, and a window that opened before midnight
is still that day's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from dotagent.alerts._statefile import notify_path, read_object, write_object
from dotagent.alerts.seam import driver_of
from dotagent.paths import Home

__all__ = ["SummaryGuard", "SummaryLine", "drivers", "summary_body", "window_at"]

FILE_NAME = "summary.json"
_SECTIONS = (("failing", "❌ Failing:"), ("degraded", "⚠️ Degraded:"), ("stale", "🕑 Stale:"))


@dataclass(frozen=True)
class SummaryLine:
    agent: str
    schedule: str
    state: str  # ok, degraded, failing, stale
    reason: str


def summary_body(day: date, lines: Iterable[SummaryLine]) -> str:
    items = list(lines)
    ok = sum(1 for i in items if i.state == "ok")
    out = [f"📊 Agents · {day.isoformat()}", f"{ok}/{len(items)} ok"]
    for state, header in _SECTIONS:
        chosen = [i for i in items if i.state == state]
        if chosen:
            out.append(header)
            out.extend(f"  · {i.agent}/{i.schedule} — {i.reason}" for i in chosen)
    return "\n".join(out)


def drivers(entries: Sequence[Any]) -> list[str]:
    """The drivers a summary goes to: the configured ones, or `desktop` when none are."""
    return [driver_of(e) for e in entries] or ["desktop"]


def window_at(now: datetime, at: time, zone: tzinfo) -> datetime:
    """The latest opening of the summary window at or before `now` (local `at`)."""
    local = now.astimezone(zone)
    for days in (0, 1, 2):
        opening = datetime.combine(local.date() - timedelta(days=days), at, tzinfo=zone)
        opening = opening.astimezone(now.tzinfo)
        if opening <= now:
            return opening
    raise AssertionError("unreachable")


def next_opening(now: datetime, at: time, zone: tzinfo) -> datetime:
    """The first opening strictly after `now`."""
    local = now.astimezone(zone)
    for days in (0, 1, 2):
        opening = datetime.combine(local.date() + timedelta(days=days), at, tzinfo=zone)
        opening = opening.astimezone(now.tzinfo)
        if opening > now:
            return opening
    raise AssertionError("unreachable")


class SummaryGuard:
    def __init__(self, home: Home) -> None:
        self.path = notify_path(home, FILE_NAME)

    def sent_for(self) -> str | None:
        value = (read_object(self.path) or {}).get("sent_for")
        return value if isinstance(value, str) else None

    def mark(self, day: date) -> None:
        write_object(self.path, {"sent_for": day.isoformat()})
