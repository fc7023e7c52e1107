"""A schedule's coming fires: the instants the daemon will dispatch it — its calendar windows
plus its fixed delay (`jitter_seconds`), or an interval's `last start + k × interval`. The
first one is the scheduler's own `next_due`, which may be sooner than the next window: `due`
(a window or first run is due now: the daemon dispatches it at once, or would if it ran) or
`retry` (a failed attempt's backoff ends). What is due but is no run — a window too old to
run (`missed`), retries used up — is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from dotagent.schedule.windows import (
    CalendarRule,
    IntervalRule,
    Policy,
    Rule,
    ScheduleState,
    decide,
    next_due,
)

__all__ = ["MAX_FIRES", "fires"]

MAX_FIRES = 10_000  # the most fires one listing holds (a schedule may fire every second)


def fires(rule: Rule, state: ScheduleState, policy: Policy, now: datetime,
          not_before: datetime | None = None) -> Iterator[tuple[datetime, str]]:
    """(instant, kind) of the coming fires of one schedule, in order, none before
    `not_before` (the end of a pause)."""
    start = now if not_before is None or not_before < now else not_before
    first = next_due(rule, state, policy, start)
    if first is None:
        return
    if first <= start and decide(rule, state, policy, start).action in ("missed", "give_up"):
        # What is due now is bookkeeping (a window too old to run, retries used up), no run.
        first = _after_settling(rule, state, policy, start)
        if first is None:
            return
    windows = _windows(rule, state, policy, start, first)
    nxt = next(windows, None)
    if nxt is None or first < nxt:
        yield first, "due" if first <= start else "retry"
        if isinstance(rule, IntervalRule) and first <= start:
            # The catch-up (or first) run starts about now: the interval counts from it.
            for at in _steps(first, rule.every, 1, MAX_FIRES):
                yield at, "window"
            return
    while nxt is not None:
        yield nxt, "window"
        nxt = next(windows, None)


def _after_settling(rule: Rule, state: ScheduleState, policy: Policy,
                    start: datetime) -> datetime | None:
    """The first fire once the due `missed` / `give_up` is recorded: the next window."""
    if isinstance(rule, CalendarRule):
        w = rule.next_after(start - policy.delay)
        return None if w is None else w + policy.delay
    anchor = state.interval_anchor
    if anchor is None:
        return start
    return anchor + (int((start - anchor) // rule.every) + 1) * rule.every


def _windows(rule: Rule, state: ScheduleState, policy: Policy, start: datetime,
             first: datetime) -> Iterator[datetime]:
    """The dispatch instants of windows strictly after `start`."""
    if isinstance(rule, CalendarRule):
        w = rule.next_after(start - policy.delay)
        while w is not None:
            yield w + policy.delay
            w = rule.next_after(w)
        return
    anchor = state.interval_anchor
    if anchor is None:
        return  # never started: `first` (due now) is the only known instant
    yield from _steps(anchor, rule.every, max(1, int((start - anchor) // rule.every) + 1))


def _steps(base: datetime, every: timedelta, k: int,
           count: int | None = None) -> Iterator[datetime]:
    """`base + k × every`, `base + (k+1) × every`, … (`count` of them, or all) up to the
    last instant a datetime holds: a long interval reaches year 9999 within MAX_FIRES."""
    end = None if count is None else k + count
    while end is None or k < end:
        try:
            at = base + k * every
        except OverflowError:
            return
        yield at
        k += 1
