"""Pure scheduling math: functions of an explicit `now`; no clock, no disk, no environment."""

from dotagent.schedule.oncalendar import (
    CalendarEvaluationError,
    CalendarSpec,
    CalendarSyntaxError,
    parse,
    parse_cached,
)

__all__ = [
    "CalendarEvaluationError",
    "CalendarSpec",
    "CalendarSyntaxError",
    "parse",
    "parse_cached",
]
