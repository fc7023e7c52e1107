"""Windows, retries, catch-up and health with a fake clock (no sleeping, no real time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dotagent.schedule.windows import (
    CalendarRule,
    IntervalRule,
    Policy,
    ScheduleState,
    WindowState,
    decide,
    expected_at,
    health,
    is_stale,
    next_event,
    next_retry,
    previous_fire,
    retry_at,
)

T0 = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # a Monday
POLICY = Policy(max_retries=3, retry_backoff_minutes=(5, 15, 30), stale_after_minutes=120)


def at(hhmm: str, day: int = 9) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 3, day, h, m, tzinfo=UTC)


def daily(*times: str) -> CalendarRule:
    """Fires every day at the given HH:MM (UTC): written here, independent of the engine."""
    slots = sorted(tuple(map(int, t.split(":"))) for t in times)

    def next_after(t: datetime) -> datetime | None:
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(3):
            d = day + timedelta(days=offset)
            for h, m in slots:
                cand = d.replace(hour=h, minute=m)
                if cand > t:
                    return cand
        return None

    return CalendarRule(next_after)


def every_second() -> CalendarRule:
    def next_after(t: datetime) -> datetime:
        return t.replace(microsecond=0) + timedelta(seconds=1)
    return CalendarRule(next_after)


# -- previous fire / expected_at ---------------------------------------------------------
def test_previous_fire_looks_back_across_days() -> None:
    rule = daily("08:30")
    assert previous_fire(rule.next_after, at("07:00", 10)) == at("08:30", 9)
    assert previous_fire(rule.next_after, at("08:30", 10)) == at("08:30", 10)  # inclusive
    assert previous_fire(rule.next_after, at("08:29", 10)) == at("08:30", 9)


def test_previous_fire_dense_rule_uses_bisection() -> None:
    now = T0 + timedelta(seconds=3, microseconds=500)
    assert previous_fire(every_second().next_after, now) == T0 + timedelta(seconds=3)


def test_previous_fire_none_when_rule_never_fired() -> None:
    future_only = CalendarRule(lambda t: max(t, T0 + timedelta(days=1)) + timedelta(seconds=1))
    assert previous_fire(future_only.next_after, T0) is None


def test_interval_expected_at() -> None:
    rule = IntervalRule(60)
    assert expected_at(rule, ScheduleState(), T0) == T0  # never started: due now
    start = T0 - timedelta(minutes=30)
    assert expected_at(rule, ScheduleState(last_start=start), T0) is None
    start = T0 - timedelta(minutes=150)
    assert expected_at(rule, ScheduleState(last_start=start), T0) == start + timedelta(hours=2)


@pytest.mark.parametrize(("minutes_late", "stale"), [(120, False), (120.99, False), (121, True)])
def test_is_stale_truncates_whole_minutes(minutes_late: float, stale: bool) -> None:
    assert is_stale(T0, T0 + timedelta(minutes=minutes_late), 120) is stale


# -- decisions ------------------------------------------------------------------------------
def test_calendar_window_runs_once_then_idles() -> None:
    rule = daily("08:30")
    now = at("08:31")
    d = decide(rule, ScheduleState(), POLICY, now)
    assert (d.action, d.window, d.attempt) == ("run", at("08:30"), 1)
    ran = ScheduleState(last_start=now, last_success=now,
                        window=WindowState(at("08:30"), attempts=1, last_attempt_at=now,
                                           last_exit_code=0))
    d = decide(rule, ran, POLICY, at("09:00"))
    assert d.action == "idle" and d.wake_at == at("08:30", 10)


def test_already_succeeded_window_is_not_rerun() -> None:
    """A manual run after the window covers it (upstream: ls >= exp => skip)."""
    state = ScheduleState(last_start=at("08:40"), last_success=at("08:41"))
    assert decide(daily("08:30"), state, POLICY, at("09:00")).action == "idle"


RETRY_TABLE = [
    # attempts, minutes since last attempt, expected action
    (1, 4, "wait"),
    (1, 5, "retry"),
    (2, 14, "wait"),
    (2, 15, "retry"),
    (3, 29, "wait"),
    (3, 30, "retry"),
    (4, 0, "give_up"),  # max_retries 3 => 4 attempts
]


@pytest.mark.parametrize(("attempts", "since", "action"), RETRY_TABLE)
def test_retry_backoff_table(attempts: int, since: int, action: str) -> None:
    last = at("09:00")
    window = WindowState(at("08:30"), attempts=attempts, last_attempt_at=last, last_exit_code=1)
    state = ScheduleState(last_start=last, window=window)
    d = decide(daily("08:30"), state, POLICY, last + timedelta(minutes=since))
    assert d.action == action
    if action == "retry":
        assert d.attempt == attempts + 1 and d.window == at("08:30")
    if action == "wait":
        assert d.wake_at == retry_at(window, POLICY.backoff_seconds)


def test_last_backoff_repeats_and_zero_retries_means_one_attempt() -> None:
    window = WindowState(at("08:30"), attempts=7, last_attempt_at=at("09:00"))
    pol = Policy(max_retries=32, retry_backoff_minutes=(1, 2), stale_after_minutes=120)
    assert retry_at(window, pol.backoff_seconds) == at("09:02")
    once = Policy(max_retries=0, retry_backoff_minutes=(5,), stale_after_minutes=120)
    state = ScheduleState(last_start=at("08:30"),
                          window=WindowState(at("08:30"), 1, at("08:30"), 1))
    assert decide(daily("08:30"), state, once, at("08:50")).action == "give_up"


def test_given_up_window_waits_for_the_next_one() -> None:
    state = ScheduleState(last_start=at("09:00"),
                          window=WindowState(at("08:30"), 4, at("09:00"), 1, given_up=True))
    d = decide(daily("08:30"), state, POLICY, at("10:00"))
    assert d.action == "idle" and d.wake_at == at("08:30", 10)
    d = decide(daily("08:30"), state, POLICY, at("08:31", 10))
    assert (d.action, d.window) == ("run", at("08:30", 10))


def test_newer_window_supersedes_a_retrying_one() -> None:
    state = ScheduleState(last_start=at("08:30"),
                          window=WindowState(at("08:30"), 1, at("08:30"), 1))
    d = decide(daily("08:30", "09:00"), state, POLICY, at("09:00"))
    assert (d.action, d.window, d.attempt) == ("run", at("09:00"), 1)


def test_wait_wakes_for_a_new_window_before_the_retry() -> None:
    state = ScheduleState(last_start=at("08:30"),
                          window=WindowState(at("08:30"), 2, at("08:55"), 1))
    d = decide(daily("08:30", "09:00"), state, POLICY, at("08:56"))
    assert d.action == "wait" and d.wake_at == at("09:00")  # before 09:10 retry


def test_catch_up_after_downtime_runs_only_the_latest_window() -> None:
    rule = daily("08:00", "10:00", "11:30")
    last = WindowState(at("10:00", 8), 1, at("10:00", 8), 0)
    state = ScheduleState(last_start=at("10:00", 8), last_success=at("10:00", 8), window=last)
    d = decide(rule, state, POLICY, at("12:00", 9))
    assert (d.action, d.window) == ("run", at("11:30", 9))
    assert d.skipped == 3 and d.first_skipped == at("11:30", 8)


def test_catch_up_older_than_stale_is_missed_not_run() -> None:
    rule = daily("08:00")
    state = ScheduleState(last_start=at("08:00", 8), last_success=at("08:00", 8),
                          window=WindowState(at("08:00", 8), 1, at("08:00", 8), 0))
    d = decide(rule, state, POLICY, at("10:01", 9))  # 121 minutes late
    assert (d.action, d.window) == ("missed", at("08:00", 9))
    missed = ScheduleState(state.last_start, state.last_success,
                           WindowState(at("08:00", 9), missed=True))
    d = decide(rule, missed, POLICY, at("10:02", 9))
    assert d.action == "idle" and d.wake_at == at("08:00", 10)  # resumes at the next window


def test_interval_never_started_is_due_and_then_counts_from_last_start() -> None:
    rule = IntervalRule(15)
    d = decide(rule, ScheduleState(), POLICY, T0)
    assert (d.action, d.window) == ("run", T0)
    ran = ScheduleState(last_start=T0, last_success=T0 + timedelta(seconds=3),
                        window=WindowState(T0, 1, T0, 0))
    d = decide(rule, ran, POLICY, T0 + timedelta(minutes=10))
    assert d.action == "idle" and d.wake_at == T0 + timedelta(minutes=15)
    d = decide(rule, ran, POLICY, T0 + timedelta(minutes=15))
    assert (d.action, d.window) == ("run", T0 + timedelta(minutes=15))


def test_interval_survives_a_given_up_window() -> None:
    rule = IntervalRule(15)
    gave_up = ScheduleState(last_start=T0, window=WindowState(T0, 4, T0, 1, given_up=True))
    d = decide(rule, gave_up, POLICY, T0 + timedelta(minutes=16))
    assert (d.action, d.window) == ("run", T0 + timedelta(minutes=15))


def test_interval_after_long_downtime_resumes_not_bursts() -> None:
    rule = IntervalRule(15)
    state = ScheduleState(last_start=T0, last_success=T0, window=WindowState(T0, 1, T0, 0))
    now = T0 + timedelta(hours=10, minutes=7)
    d = decide(rule, state, POLICY, now)
    # The latest slot (7 minutes old) runs once; the 39 before it are skipped, not run.
    assert d.action == "run" and d.window == T0 + timedelta(hours=10)
    assert d.skipped == 39
    slow = IntervalRule(180)
    d = decide(slow, state, POLICY, T0 + timedelta(hours=8, minutes=30))
    assert d.action == "missed" and d.window == T0 + timedelta(hours=6)  # 150 min > 120


def test_next_event_is_the_earliest_due_instant() -> None:
    items = [
        (daily("08:30"), ScheduleState(last_start=at("08:30"), last_success=at("08:30"),
                                       window=WindowState(at("08:30"), 1, at("08:30"), 0)),
         POLICY),
        (IntervalRule(45), ScheduleState(last_start=at("08:50"), last_success=at("08:50")),
         POLICY),
        (daily("10:00"), ScheduleState(last_start=at("10:00", 8),
                                       window=WindowState(at("10:00", 8), 1,
                                                          at("10:00", 8), 0),
                                       last_success=at("10:00", 8)), POLICY),
    ]
    assert next_event(items, at("09:00")) == at("09:35")
    failing = (daily("07:00"), ScheduleState(last_start=at("08:58"),
                                             window=WindowState(at("07:00"), 2,
                                                                at("08:58"), 1)), POLICY)
    assert next_event([*items, failing], at("09:00")) == at("09:13")
    assert next_event([], at("09:00")) is None


# -- health (S14.23) ------------------------------------------------------------------------
HEALTH_TABLE = [
    ("never ran", ScheduleState(), at("09:00"), "stale", "never ran"),
    ("first attempt ok",
     ScheduleState(at("08:30"), at("08:31"), WindowState(at("08:30"), 1, at("08:30"), 0)),
     at("09:00"), "ok", "ok"),
    ("recovered",
     ScheduleState(at("08:50"), at("08:51"), WindowState(at("08:30"), 3, at("08:50"), 0)),
     at("09:00"), "degraded", "recovered after 3 attempts"),
    ("retrying",
     ScheduleState(at("08:35"), None, WindowState(at("08:30"), 2, at("08:35"), 1)),
     at("09:00"), "failing", "2 failed attempt(s), retrying at 08:50"),
    ("gave up",
     ScheduleState(at("09:20"), None, WindowState(at("08:30"), 4, at("09:20"), 1, True)),
     at("10:00"), "failing", "gave up after 4 attempts"),
    ("missed",
     ScheduleState(at("08:30", 8), at("08:30", 8),
                   WindowState(at("08:30"), missed=True)),
     at("11:00"), "stale", "missed the window of 2h30m ago (stale)"),
    ("not run, late", ScheduleState(at("08:30", 8), at("08:30", 8), None),
     at("08:45"), "degraded", "window 15m ago has not run yet"),
    ("not run, stale", ScheduleState(at("08:30", 8), at("08:30", 8), None),
     at("11:00"), "stale", "window 2h30m ago was missed (stale)"),
]


@pytest.mark.parametrize(("label", "state", "now", "expected", "reason"), HEALTH_TABLE,
                         ids=[row[0] for row in HEALTH_TABLE])
def test_calendar_health(label: str, state: ScheduleState, now: datetime, expected: str,
                         reason: str) -> None:
    h = health(daily("08:30"), state, POLICY, now)
    assert (h.state, h.reason) == (expected, reason)


INTERVAL_HEALTH = [
    (10, "ok", "ok"),
    (60 + 20, "degraded", "overdue by 20m"),
    (60 + 61, "stale", "overdue by 1h01m (more than one interval)"),
]


@pytest.mark.parametrize(("minutes", "expected", "reason"), INTERVAL_HEALTH)
def test_interval_health(minutes: int, expected: str, reason: str) -> None:
    state = ScheduleState(T0, T0, WindowState(T0, 1, T0, 0))
    h = health(IntervalRule(60), state, POLICY, T0 + timedelta(minutes=minutes))
    assert (h.state, h.reason) == (expected, reason)


def test_interval_health_failing_while_retrying() -> None:
    state = ScheduleState(T0, None, WindowState(T0, 1, T0, 1))
    h = health(IntervalRule(60), state, POLICY, T0 + timedelta(minutes=2))
    assert h.state == "failing"


def test_next_due_fast_path_agrees_with_decide() -> None:
    """next_due's shortcut for settled windows must give what `decide` would."""
    from dotagent.schedule.windows import next_due

    rules = [daily("08:30"), daily("08:30", "09:00", "23:59"), IntervalRule(15),
             IntervalRule(240)]
    windows = [None,
               WindowState(at("08:30"), 1, at("08:30"), 0),
               WindowState(at("08:30"), 2, at("08:40"), 1),
               WindowState(at("08:30"), 4, at("09:10"), 1, given_up=True),
               WindowState(at("08:30"), missed=True)]
    starts = [None, at("08:30"), at("08:40"), at("07:00")]
    successes = [None, at("08:31"), at("08:41")]
    for rule in rules:
        for window in windows:
            for start in starts:
                for success in successes:
                    state = ScheduleState(start, success, window)
                    for minutes in range(0, 24 * 60, 7):
                        now = at("08:30") + timedelta(minutes=minutes)
                        d = decide(rule, state, POLICY, now)
                        slow = now if d.action in ("run", "retry", "give_up", "missed") \
                            else d.wake_at
                        assert next_due(rule, state, POLICY, now) == slow, (rule, state, now)


def test_interval_with_lost_heartbeat_does_not_run_every_tick() -> None:
    """A deleted or corrupt heartbeat must not turn an interval into a retry storm."""
    rule = IntervalRule(60)
    state = ScheduleState(None, None, WindowState(T0, 1, T0, 0))
    d = decide(rule, state, POLICY, T0 + timedelta(minutes=5))
    assert d.action == "idle" and d.wake_at == T0 + timedelta(hours=1)


def test_interval_counts_real_minutes_across_dst() -> None:
    """60 minutes after 01:30 CET on the spring-forward night is 03:30 CEST, not 02:30."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)
    state = ScheduleState(start, start, WindowState(start, 1, start, 0))
    rule = IntervalRule(60)
    forty_minutes_later = datetime(2026, 3, 29, 3, 10, tzinfo=berlin)
    assert expected_at(rule, state, forty_minutes_later) is None
    d = decide(rule, state, POLICY, forty_minutes_later)
    assert d.action == "idle"
    assert d.wake_at == datetime(2026, 3, 29, 3, 30, tzinfo=berlin)
    assert d.wake_at.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=1)


def test_should_retry_follows_the_backoff_instant() -> None:
    from dotagent.schedule.windows import should_retry

    window = WindowState(at("08:30"), attempts=2, last_attempt_at=at("09:00"))
    assert not should_retry(window, (300, 900, 1800), at("09:14"))
    assert should_retry(window, (300, 900, 1800), at("09:15"))
    assert should_retry(WindowState(at("08:30")), (300,), at("08:30"))  # never attempted


def test_a_retry_in_seconds_waits_out_the_whole_second_the_attempt_began_in() -> None:
    """Window files keep the attempt's start in whole seconds: a 2 s step counts from the end
    of that second (never early); a step in minutes keeps upstream's arithmetic."""
    window = WindowState(at("09:00"), attempts=1, last_exit_code=3, last_attempt_at=at("09:00"))
    seconds = Policy(max_retries=3, retry_backoff_minutes=(5,), stale_after_minutes=120,
                     retry_backoff_seconds=(2, 4))
    assert next_retry(window, seconds) == at("09:00") + timedelta(seconds=3)
    assert next_retry(window, POLICY) == at("09:05")
    second = WindowState(at("09:00"), attempts=2, last_exit_code=3, last_attempt_at=at("09:01"))
    assert next_retry(second, seconds) == at("09:01") + timedelta(seconds=5)

