"""Windows: which instant should have fired, whether to run, retry, give up or skip it, how
healthy a schedule is, and when anything is next due. Pure functions of their inputs.

Vocabulary
- A *rule* says when a schedule fires: a calendar (cron set or OnCalendar expression, given
  as a `next_after` function) or an interval of N minutes counted from the last start.
- A *window* is one instant the rule fired at (`expected_at`). Attempts, retries and give-ups
  are counted per window; the daemon persists that as `WindowState`.

Rules (SPEC S14.1, S14.2, S14.20, S14.21, S14.23)
- The latest window is the most recent instant <= now; calendars look back across days.
- An interval schedule that never started is due at once; afterwards its windows are
  `last_start + k × interval`.
- A new window that is older than `stale_after_minutes` when first seen (downtime) is not run:
  it is *missed*, and the windows skipped before it are counted, never run in a burst.
- A failed window is retried after `retry_backoff_minutes[min(attempts - 1, len - 1)]` minutes,
  up to `max_retries` retries (so `max_retries + 1` attempts), then given up. A newer window
  supersedes an older one still retrying.
- What an exit status means is `ExitPolicy`'s one test: 0 and `success_exit_codes` succeed;
  a failed attempt whose status is in `no_retry_exit_codes` is given up at once.
- A calendar schedule's fixed delay (`Policy.delay`, from `jitter_seconds`) moves when a
  window is *dispatched*, never the window: its `expected_at` stays the calendar instant, it
  falls due at `expected_at + delay`, and staleness counts from that instant. Intervals have
  no delay (they count from the last start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Literal

__all__ = [
    "CalendarRule",
    "Decision",
    "ExitPolicy",
    "Health",
    "IntervalRule",
    "Policy",
    "Rule",
    "ScheduleState",
    "WindowState",
    "decide",
    "expected_at",
    "fixed_delay",
    "health",
    "is_stale",
    "next_due",
    "next_event",
    "previous_fire",
    "retry_at",
    "should_retry",
    "whole_minutes",
]

NextAfter = Callable[[datetime], "datetime | None"]

_USEC = timedelta(microseconds=1)
# How far back a calendar is searched for its latest window: beyond this, a calendar that
# fired once long ago (e.g. a one-shot date) counts as having no window.
_LOOKBACK = timedelta(days=366 * 5)
_SKIP_COUNT_LIMIT = 100_000


@dataclass(frozen=True)
class CalendarRule:
    """A cron set or OnCalendar expression: `next_after(t)` is the first fire strictly after t
    (aware datetimes)."""

    next_after: NextAfter


@dataclass(frozen=True)
class IntervalRule:
    minutes: int
    every: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", timedelta(minutes=self.minutes))


Rule = CalendarRule | IntervalRule


@dataclass(frozen=True)
class ExitPolicy:
    """What an attempt's exit status means (`[run] success_exit_codes` and
    `no_retry_exit_codes`). `succeeded` is THE success test: the run lifecycle, the heartbeat's
    `last_success_at`, the history outcome and the window decisions all go through it.

    Statuses are dotagent's (124: timed out, 126/127: could not start, 128+N: killed by signal
    N); the manifest refuses those three in `success_exit_codes`, so a timeout or a failed
    start is never a success, and the test needs nothing but the status."""

    success_exit_codes: frozenset[int] = frozenset()
    no_retry_exit_codes: frozenset[int] = frozenset()

    def succeeded(self, exit_code: int | None) -> bool:
        """0, or one of `success_exit_codes`. None (no attempt recorded) is not a success."""
        return exit_code is not None and (exit_code == 0 or exit_code in self.success_exit_codes)

    def retry_allowed(self, exit_code: int | None) -> bool:
        """False when a failed attempt's status is one of `no_retry_exit_codes`."""
        return exit_code is None or exit_code not in self.no_retry_exit_codes


@dataclass(frozen=True)
class Policy:
    """A schedule's effective policy (after overrides, defaults and clamps)."""

    max_retries: int
    retry_backoff_minutes: tuple[int, ...]
    stale_after_minutes: int
    exits: ExitPolicy = ExitPolicy()
    # A calendar schedule's fixed dispatch delay (`fixed_delay` of its jitter_seconds); ignored
    # for intervals.
    delay: timedelta = timedelta(0)

    @property
    def max_attempts(self) -> int:
        """`max_retries` counts retries after the first attempt (S14.2)."""
        return self.max_retries + 1


@dataclass(frozen=True)
class WindowState:
    expected_at: datetime
    attempts: int = 0
    last_attempt_at: datetime | None = None
    last_exit_code: int | None = None
    given_up: bool = False
    missed: bool = False  # recorded as missed (stale when first seen); never run


@dataclass(frozen=True)
class ScheduleState:
    last_start: datetime | None = None  # heartbeat started_at
    last_success: datetime | None = None  # heartbeat last_success_at
    window: WindowState | None = None  # the latest window the daemon has recorded
    # A schedule that has never run, watched by a caller since before this instant (the
    # daemon since it first saw it): windows after it that pass before the first run are
    # counted as skipped, as they are after a run (SPEC S14.1), not dropped unseen.
    watched_since: datetime | None = None

    @property
    def interval_anchor(self) -> datetime | None:
        """An interval counts from the last start; when the heartbeat is gone or unreadable,
        from the recorded window, so that a lost heartbeat never means "due on every tick"."""
        # In UTC: Python adds and subtracts aware datetimes of one zone on the wall clock, which
        # would make an interval across a DST change an hour short or long.
        if self.last_start is not None:
            return self.last_start.astimezone(UTC)
        if self.window is not None:
            return (self.window.last_attempt_at or self.window.expected_at).astimezone(UTC)
        return None

    def succeeded(self, window: WindowState, exits: ExitPolicy) -> bool:
        """The window's last attempt succeeded (by `exits`), or a success (any command) came
        after it."""
        if window.attempts > 0 and exits.succeeded(window.last_exit_code):
            return True
        return self.last_success is not None and self.last_success >= window.expected_at


Action = Literal["run", "retry", "give_up", "missed", "wait", "idle"]


@dataclass(frozen=True)
class Decision:
    action: Action
    window: datetime | None = None  # the window concerned
    attempt: int = 0  # 1-based attempt number for run/retry
    wake_at: datetime | None = None  # for wait/idle: when to look again (None: never)
    skipped: int = 0  # windows passed over before `window` (downtime), not run
    first_skipped: datetime | None = None


@dataclass(frozen=True)
class Health:
    state: Literal["ok", "degraded", "failing", "stale"]
    reason: str


# --------------------------------------------------------------------------------------
# Small rules
# --------------------------------------------------------------------------------------
def whole_minutes(delta: timedelta) -> int:
    """Minutes in `delta`, truncated toward zero (upstream's arithmetic)."""
    seconds = delta.total_seconds()
    return int(seconds / 60)


def _utc(t: datetime) -> datetime:
    """All arithmetic happens in UTC: Python adds and subtracts aware datetimes that share a
    zone on the wall clock, which is an hour off across a DST change."""
    return t.astimezone(UTC)


def is_stale(expected: datetime, now: datetime, stale_after_minutes: int) -> bool:
    return whole_minutes(_utc(now) - _utc(expected)) > stale_after_minutes


def _backoff(attempts: int, backoffs: tuple[int, ...]) -> int:
    if not backoffs:
        return 0
    return backoffs[min(max(attempts - 1, 0), len(backoffs) - 1)]


def retry_at(window: WindowState, backoffs: tuple[int, ...]) -> datetime:
    """When a failed window may be attempted again (S2.4 indexing)."""
    if window.last_attempt_at is None:
        return window.expected_at
    return _utc(window.last_attempt_at) + timedelta(minutes=_backoff(window.attempts, backoffs))


def should_retry(window: WindowState, backoffs: tuple[int, ...], now: datetime) -> bool:
    return now >= retry_at(window, backoffs)


_DELAY_STEP = timedelta(milliseconds=1)


def fixed_delay(salt: bytes, agent: str, schedule_id: str, jitter_seconds: int) -> timedelta:
    """The delay in [0, jitter_seconds) that `jitter_seconds` gives one schedule: a fraction
    of it taken from sha256(salt, agent, schedule id), in whole milliseconds. The same inputs
    give the same delay in every process (systemd's `FixedRandomDelay=true`); `salt` makes it
    differ between machines and homes (see `dotagent.machineid.jitter_salt`)."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = sha256(b"\0".join((b"dotagent-jitter-v1", salt, agent.encode(),
                                schedule_id.encode()))).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64  # in [0, 1)
    return int(fraction * jitter_seconds * 1000) * _DELAY_STEP


def _delay(rule: Rule, policy: Policy) -> timedelta:
    return policy.delay if isinstance(rule, CalendarRule) else timedelta(0)


# --------------------------------------------------------------------------------------
# Where windows fall
# --------------------------------------------------------------------------------------
def previous_fire(next_after: NextAfter, now: datetime,
                  lookback: timedelta = _LOOKBACK, hint: datetime | None = None
                  ) -> datetime | None:
    """The latest fire at or before `now`, using only a forward `next_after`.

    Start from `hint` (a known earlier fire) or widen a look-back span until it holds a fire;
    then walk forward a few steps, and bisect when many fires remain (e.g. every second).
    O(log span) calls of `next_after`.
    """
    now = _utc(now)
    span = timedelta(seconds=1)
    found: datetime | None = hint if hint is not None and hint <= now else None
    while found is None and span <= lookback * 2:
        start = now - span
        candidate = next_after(start)
        if candidate is not None and candidate <= now:
            found = candidate
            break
        span *= 2
    if found is None:
        return None
    found = _utc(found)
    for _ in range(16):
        nxt = next_after(found)
        if nxt is None or nxt > now:
            return found
        found = _utc(nxt)
    # Dense rule: bisect for the last fire in (found, now].
    lo, hi = found, now
    while hi - lo > _USEC:
        mid = lo + (hi - lo) / 2
        nxt = next_after(mid)
        if nxt is not None and nxt <= now:
            lo = mid
        else:
            hi = mid
    last = next_after(lo)
    return last if last is not None and last <= now else found


def expected_at(rule: Rule, state: ScheduleState, now: datetime) -> datetime | None:
    """The latest window at or before `now` (None: nothing has fallen due yet)."""
    now = _utc(now)
    if isinstance(rule, IntervalRule):
        anchor = state.interval_anchor
        if anchor is None:
            return now  # never started: due when first seen (S14.1)
        elapsed = now - anchor
        if elapsed < rule.every:
            return None
        k = elapsed // rule.every
        return anchor + k * rule.every
    return _calendar_windows(rule, state, now)[0]


def _calendar_windows(rule: CalendarRule, state: ScheduleState,
                      now: datetime) -> tuple[datetime | None, datetime | None]:
    """(latest fire <= now, first fire > now) for a calendar rule.

    Steady state costs one `next_after` call: the recorded window is a fire, and when the next
    fire after it lies in the future, both answers are known.
    """
    window = state.window
    hint = window.expected_at if window is not None and window.expected_at <= now else None
    if hint is not None:
        nxt = rule.next_after(hint)
        if nxt is None or nxt > now:
            return hint, nxt
    latest = previous_fire(rule.next_after, now, hint=hint)
    return latest, rule.next_after(now)


def _next_window_after(rule: Rule, state: ScheduleState, t: datetime) -> datetime | None:
    if isinstance(rule, IntervalRule):
        anchor = state.interval_anchor
        if anchor is None:
            return t
        if t < anchor + rule.every:
            return anchor + rule.every
        k = (t.astimezone(UTC) - anchor) // rule.every + 1
        return anchor + k * rule.every
    return rule.next_after(t)


def _count_skipped(rule: Rule, state: ScheduleState, since: datetime | None,
                   window: datetime) -> tuple[int, datetime | None]:
    """Windows strictly between the last handled instant and `window`."""
    if since is None or since >= window:
        return 0, None
    if isinstance(rule, IntervalRule):
        k = (_utc(window) - _utc(since)) // rule.every
        return (int(k) - 1, _utc(since) + rule.every) if k > 1 else (0, None)
    count = 0
    first: datetime | None = None
    t = rule.next_after(since)
    while t is not None and t < window and count < _SKIP_COUNT_LIMIT:
        count += 1
        first = first or t
        t = rule.next_after(t)
    return count, first


# --------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------
def decide(rule: Rule, state: ScheduleState, policy: Policy, now: datetime) -> Decision:
    """What the daemon should do about one schedule at `now`."""
    now = _utc(now)
    window = state.window
    upcoming: datetime | None
    delay = _delay(rule, policy)
    if isinstance(rule, CalendarRule):
        # A window is due `delay` after its instant: look for windows as of `now - delay`.
        exp, upcoming = _calendar_windows(rule, state, now - delay)
        upcoming = None if upcoming is None else upcoming + delay
    else:
        exp, upcoming = expected_at(rule, state, now), None
    if exp is not None and (window is None or exp > window.expected_at):
        done = state.last_success is not None and state.last_success >= exp
        if not done:
            since = (window.expected_at if window is not None else
                     state.last_start or state.watched_since)
            skipped, first = _count_skipped(rule, state, since, exp)
            if is_stale(exp + delay, now, policy.stale_after_minutes):
                return Decision("missed", exp, skipped=skipped, first_skipped=first)
            return Decision("run", exp, attempt=1, skipped=skipped, first_skipped=first)
    if window is not None and not window.given_up and not window.missed \
            and not state.succeeded(window, policy.exits):
        if window.attempts == 0:
            return Decision("run", window.expected_at, attempt=1)
        if window.attempts >= policy.max_attempts or \
                not policy.exits.retry_allowed(window.last_exit_code):
            return Decision("give_up", window.expected_at, attempt=window.attempts)
        when = retry_at(window, policy.retry_backoff_minutes)
        if now >= when:
            return Decision("retry", window.expected_at, attempt=window.attempts + 1)
        if upcoming is None:
            upcoming = _next_window_after(rule, state, now)
        wake = when if upcoming is None else min(when, upcoming)
        return Decision("wait", window.expected_at, attempt=window.attempts, wake_at=wake)
    if upcoming is None:
        upcoming = _next_window_after(rule, state, now)
    return Decision("idle", exp, wake_at=upcoming)


def next_due(rule: Rule, state: ScheduleState, policy: Policy,
             now: datetime) -> datetime | None:
    """The earliest instant >= now at which `decide` would act (None: never again)."""
    now = _utc(now)
    window = state.window
    if window is not None and window.expected_at <= now and (
            window.given_up or window.missed or state.succeeded(window, policy.exits)):
        # Fast path for the common case (latest window settled, nothing due): the next
        # window is the answer. Falls through to `decide` whenever anything is pending.
        if isinstance(rule, CalendarRule):
            nxt = rule.next_after(window.expected_at)
            if nxt is None:
                return None
            if nxt + policy.delay > now:
                return nxt + policy.delay
        elif state.interval_anchor is not None:
            due = state.interval_anchor + rule.every
            if due > now:
                return due
    d = decide(rule, state, policy, now)
    if d.action in ("run", "retry", "give_up", "missed"):
        return now
    return d.wake_at


def next_event(items: Iterable[tuple[Rule, ScheduleState, Policy]],
               now: datetime) -> datetime | None:
    """The earliest instant anything is due, so the daemon can sleep exactly until then."""
    best: datetime | None = None
    for rule, state, policy in items:
        t = next_due(rule, state, policy, now)
        if t is not None and (best is None or t < best):
            best = t
    return best


# --------------------------------------------------------------------------------------
# Health (S14.23)
# --------------------------------------------------------------------------------------
def _ago(delta: timedelta) -> str:
    minutes = whole_minutes(delta)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d"


def health(rule: Rule, state: ScheduleState, policy: Policy, now: datetime) -> Health:
    now = _utc(now)
    window = state.window
    if state.last_start is None and state.last_success is None and \
            (window is None or window.attempts == 0):
        if window is not None and window.missed:
            return Health("stale", f"missed its window by "
                                   f"{_ago(now - _utc(window.expected_at))}; "
                                   "never ran")
        return Health("stale", "never ran")
    delay = _delay(rule, policy)
    exp = expected_at(rule, state, now - delay)
    if isinstance(rule, IntervalRule):
        # The interval's current window is its last start; overdue means past the next one.
        assert state.last_start is not None or state.last_success is not None
        if window is not None and not state.succeeded(window, policy.exits) \
                and window.attempts > 0 and not window.missed:
            return _failing(window, policy)
        anchor = state.last_start or state.last_success
        assert anchor is not None
        due = _utc(anchor) + rule.every
        if now >= due:
            overdue = now - due
            if overdue < rule.every:
                return Health("degraded", f"overdue by {_ago(overdue)}")
            return Health("stale", f"overdue by {_ago(overdue)} (more than one interval)")
        return _settled(window, state, policy)
    if window is not None and exp is not None and window.expected_at >= exp:
        if window.missed and not is_stale(_utc(window.expected_at) + delay, now,
                                          policy.stale_after_minutes):
            return _skipped(window, state, now)
        if window.missed:
            return Health("stale", f"missed the window of "
                                   f"{_ago(now - _utc(window.expected_at))} "
                                   "ago (stale)")
        if state.succeeded(window, policy.exits):
            return _settled(window, state, policy)
        if window.attempts > 0:
            return _failing(window, policy)
    if exp is not None and (state.last_success is None or state.last_success < exp):
        due = _utc(exp) + delay
        late = now - due
        if is_stale(due, now, policy.stale_after_minutes):
            return Health("stale", f"window {_ago(late)} ago was missed (stale)")
        return Health("degraded", f"window {_ago(late)} ago has not run yet")
    return _settled(window, state, policy)


def _skipped(window: WindowState, state: ScheduleState, now: datetime) -> Health:
    """A window recorded as missed while still younger than `stale_after_minutes`: it was not
    too old when first seen (that is recorded only once it is stale), so it was passed over
    because the agent was still running (V7: skipped, not queued). That is no staleness: the
    schedule is as healthy as its last run (docs/decisions.md, "a window skipped for an
    overlap is not stale")."""
    skipped = f"the window of {_ago(now - _utc(window.expected_at))} ago was skipped: the " \
              "agent was still running"
    last_ok = state.last_success is not None and (
        state.last_start is None or state.last_success >= state.last_start)
    if last_ok:
        return Health("ok", f"ok; {skipped}")
    return Health("failing", f"the last run did not succeed; {skipped}")


def _settled(window: WindowState | None, state: ScheduleState, policy: Policy) -> Health:
    if window is not None and state.succeeded(window, policy.exits) and window.attempts > 1:
        return Health("degraded", f"recovered after {window.attempts} attempts")
    return Health("ok", "ok")


def _failing(window: WindowState, policy: Policy) -> Health:
    if window.attempts > 0 and not policy.exits.retry_allowed(window.last_exit_code):
        return Health("failing", f"gave up after {window.attempts} attempt(s): exit "
                                 f"{window.last_exit_code} is not retried "
                                 "(no_retry_exit_codes)")
    if window.given_up or window.attempts >= policy.max_attempts:
        return Health("failing", f"gave up after {window.attempts} attempts")
    nxt = retry_at(window, policy.retry_backoff_minutes)
    return Health("failing", f"{window.attempts} failed attempt(s), retrying at "
                             f"{nxt.strftime('%H:%M')}")
