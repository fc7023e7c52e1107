"""`--since T`, as `audit show` and `history` take it: an ISO date or time, or a duration back
from now (`90m`, `2h`, `3d`, `1w`)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import click

__all__ = ["SINCE_HELP", "parse_since"]

SINCE_HELP = ("ISO time (2026-05-19T14:30:00-0300, 2026-05-19) or a duration back from now "
              "(90m, 2h, 3d, 1w).")

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """--since as an aware datetime; a usage error (exit 2) for anything unusable. A time
    without an offset is local time; a duration counts back from `now` (default: now)."""
    if value is None:
        return None
    text = value.strip()
    m = _DURATION.fullmatch(text)
    if not m:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither an ISO time (2026-05-19T14:30:00-0300, 2026-05-19) "
                "nor a duration (90m, 2h, 3d, 1w)", param_hint="'--since'") from None
    try:
        if m:
            delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
            return (now or datetime.now().astimezone()) - delta
        return when.astimezone()  # a value without an offset means local time
    except (OverflowError, ValueError, OSError):
        # The duration, or the time in local time, falls outside the years datetime can
        # hold (1–9999), or the platform cannot convert it.
        raise click.BadParameter(f"{value!r} is out of range (years 1–9999 only)",
                                 param_hint="'--since'") from None
