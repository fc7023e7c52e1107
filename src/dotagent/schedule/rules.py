"""From a schedule's declared fields to a `Rule` the window logic can evaluate.

A cron set means exactly its OnCalendar equivalent (S14.22):
`weekdays = [1, 5], hours = [8, 18], minute = 30` is `Mon,Fri *-*-* 08,18:30:00`, DST
included. An empty list means "every" (see docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dotagent.localzone import named_zone
from dotagent.schedule.oncalendar import CalendarSpec, parse_cached
from dotagent.schedule.windows import CalendarRule, IntervalRule, Rule

__all__ = ["calendar_rule", "cron_expression", "cron_rule", "rule_for"]

_WEEKDAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def cron_expression(weekdays: Sequence[int], hours: Sequence[int], minute: int) -> str:
    """The OnCalendar expression a cron set stands for."""
    days = ",".join(_WEEKDAY_NAMES[d] for d in sorted(set(weekdays)))
    hour_part = ",".join(f"{h:02d}" for h in sorted(set(hours))) or "*"
    time_part = f"{hour_part}:{minute:02d}:00"
    return f"{days} *-*-* {time_part}" if days else f"*-*-* {time_part}"


def calendar_rule(spec: CalendarSpec, zone: ZoneInfo) -> CalendarRule:
    """Bind a parsed expression to the zone it is evaluated in (its own zone wins)."""

    def next_after(t: datetime) -> datetime | None:
        return spec.next_elapse(t, zone)

    return CalendarRule(next_after)


def cron_rule(weekdays: Sequence[int], hours: Sequence[int], minute: int,
              zone: ZoneInfo) -> CalendarRule:
    return calendar_rule(parse_cached(cron_expression(weekdays, hours, minute)), zone)


def rule_for(schedule: Any, local_zone: ZoneInfo) -> Rule:
    """The rule of a manifest schedule (`CronSchedule`, `IntervalSchedule` or
    `ExpressionSchedule`); its own `timezone`, if any, replaces the local zone."""
    if schedule.type == "interval":
        return IntervalRule(schedule.interval_minutes)
    # named_zone: a `right/…` zone counts leap seconds, as systemd (glibc) reads it.
    zone = named_zone(schedule.timezone) if schedule.timezone else local_zone
    if schedule.type == "cron":
        return cron_rule(schedule.weekdays, schedule.hours, schedule.minute, zone)
    return calendar_rule(parse_cached(schedule.expression), zone)
