"""`jitter_seconds`: a fixed delay per agent and schedule (systemd's RandomizedDelaySec= with
FixedRandomDelay=true), applied by the pure scheduler with a fake clock: the window keeps its
calendar instant, only the dispatch moves."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dotagent.machineid import jitter_salt
from dotagent.manifest import parse_manifest
from dotagent.paths import Home
from dotagent.schedule.windows import (
    CalendarRule,
    IntervalRule,
    Policy,
    ScheduleState,
    WindowState,
    decide,
    fixed_delay,
    health,
    next_due,
    next_event,
)

POLICY = Policy(max_retries=3, retry_backoff_minutes=(5, 15, 30), stale_after_minutes=120)
DELAY = timedelta(seconds=90)
JITTERED = replace(POLICY, delay=DELAY)


def at(hhmm: str, day: int = 9, second: int = 0) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 3, day, h, m, second, tzinfo=UTC)


def daily(*times: str) -> CalendarRule:
    """Fires every day at the given HH:MM (UTC), independent of the calendar engine."""
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


def hourly() -> CalendarRule:
    def next_after(t: datetime) -> datetime:
        return t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return CalendarRule(next_after)


# -- the delay itself ----------------------------------------------------------------------
def test_fixed_delay_is_stable_and_within_the_jitter() -> None:
    salt = b"machine-and-home"
    first = fixed_delay(salt, "report", "daily", 600)
    assert all(fixed_delay(salt, "report", "daily", 600) == first for _ in range(5))
    assert timedelta(0) <= first < timedelta(seconds=600)
    assert first.microseconds % 1000 == 0  # whole milliseconds
    # Each input matters: agent, schedule, salt.
    others = {fixed_delay(salt, "report", "weekly", 600), fixed_delay(salt, "backup", "daily", 600),
              fixed_delay(b"another machine", "report", "daily", 600)}
    assert first not in others
    assert fixed_delay(salt, "report", "daily", 0) == timedelta(0)


def test_fixed_delays_spread_over_the_whole_jitter() -> None:
    delays = [fixed_delay(b"s", "agent", f"sched-{i}", 100).total_seconds() for i in range(2000)]
    assert all(0 <= d < 100 for d in delays)
    assert min(delays) < 1 and max(delays) > 99
    # Roughly uniform: each tenth of the range holds 10% ± 3%.
    for k in range(10):
        share = sum(k * 10 <= d < (k + 1) * 10 for d in delays) / len(delays)
        assert 0.07 < share < 0.13, (k, share)


def test_fixed_delay_is_the_same_in_another_process(tmp_path: Path) -> None:
    home = Home(tmp_path)
    mine = fixed_delay(jitter_salt(home), "report", "daily", 3600)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from dotagent.machineid import jitter_salt
        from dotagent.paths import Home
        from dotagent.schedule.windows import fixed_delay
        print(fixed_delay(jitter_salt(Home(Path({str(tmp_path)!r}))), "report", "daily",
                          3600).total_seconds())
    """)
    # A different hash seed: nothing may depend on Python's per-process string hashing.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345"})
    assert float(out.stdout) == mine.total_seconds()


def test_the_salt_differs_per_home(tmp_path: Path) -> None:
    a, b = Home(tmp_path / "a"), Home(tmp_path / "b")
    assert jitter_salt(a) == jitter_salt(Home(tmp_path / "a"))
    assert jitter_salt(a) != jitter_salt(b)


# -- the scheduler -------------------------------------------------------------------------
def test_the_window_fires_at_its_instant_plus_the_delay() -> None:
    rule = daily("08:30")
    done = ScheduleState(last_start=at("08:31", 8, 30), last_success=at("08:32", 8),
                         window=WindowState(at("08:30", 8), attempts=1,
                                            last_attempt_at=at("08:31", 8, 30),
                                            last_exit_code=0))
    # Before the delayed instant: nothing to do, and the wake-up is the delayed instant.
    for now in (at("08:00"), at("08:30"), at("08:31", second=29)):
        d = decide(rule, done, JITTERED, now)
        assert d.action == "idle" and d.wake_at == at("08:31", second=30), now
        assert next_due(rule, done, JITTERED, now) == at("08:31", second=30)
        assert next_event([(rule, done, JITTERED)], now) == at("08:31", second=30)
    # At it: run the window, which is still the calendar instant.
    d = decide(rule, done, JITTERED, at("08:31", second=30))
    assert (d.action, d.window, d.attempt) == ("run", at("08:30"), 1)
    # Without a delay the same state fires at the instant itself.
    assert decide(rule, done, POLICY, at("08:30")).action == "run"


def test_after_the_run_the_next_window_is_tomorrow_plus_the_delay() -> None:
    rule = daily("08:30")
    ran = ScheduleState(last_start=at("08:31", second=30), last_success=at("08:32"),
                        window=WindowState(at("08:30"), attempts=1,
                                           last_attempt_at=at("08:31", second=30),
                                           last_exit_code=0))
    for now in (at("08:32"), at("23:00")):
        assert decide(rule, ran, JITTERED, now).action == "idle"
        assert next_due(rule, ran, JITTERED, now) == at("08:31", 10, 30)  # fast path
        assert decide(rule, ran, JITTERED, now).wake_at == at("08:31", 10, 30)  # full path


def test_a_never_seen_schedule_waits_for_the_delay() -> None:
    rule = daily("08:30")
    fresh = ScheduleState()
    # At 08:31, with the delay, it is as if it were 08:29:30: the latest window is yesterday's,
    # too old to catch up (exactly what 08:29 says without a delay).
    d = decide(rule, fresh, JITTERED, at("08:31"))
    assert (d.action, d.window) == ("missed", at("08:30", 8))
    assert (decide(rule, fresh, POLICY, at("08:29")).window) == at("08:30", 8)
    d = decide(rule, fresh, JITTERED, at("08:31", second=30))
    assert (d.action, d.window) == ("run", at("08:30"))


def test_retries_are_not_delayed_again() -> None:
    rule = daily("08:30")
    failed = ScheduleState(last_start=at("08:31", second=30),
                           window=WindowState(at("08:30"), attempts=1,
                                              last_attempt_at=at("08:31", second=30),
                                              last_exit_code=1))
    d = decide(rule, failed, JITTERED, at("08:33"))
    assert d.action == "wait" and d.wake_at == at("08:36", second=30)  # backoff 5 min
    d = decide(rule, failed, JITTERED, at("08:36", second=30))
    assert (d.action, d.window, d.attempt) == ("retry", at("08:30"), 2)


def test_catch_up_counts_staleness_from_the_delayed_instant() -> None:
    rule = daily("08:30")
    before = ScheduleState(last_start=at("08:31", 8, 30), last_success=at("08:32", 8),
                           window=WindowState(at("08:30", 8), attempts=1, last_exit_code=0))
    # Down from 07:00 to 10:32: 120 whole minutes after 08:31:30 is still catch-up...
    d = decide(rule, before, JITTERED, at("10:32"))
    assert (d.action, d.window) == ("run", at("08:30"))
    # ...one minute later it is missed, as it would be at 10:31 without the delay.
    assert decide(rule, before, JITTERED, at("10:33")).action == "missed"
    assert decide(rule, before, POLICY, at("10:31")).action == "missed"
    assert decide(rule, before, POLICY, at("10:30")).action == "run"


def test_a_delay_longer_than_stale_after_never_makes_every_window_missed() -> None:
    rule = daily("08:30")
    policy = replace(POLICY, stale_after_minutes=0, delay=timedelta(hours=3))
    state = ScheduleState(last_start=at("11:30", 8), last_success=at("11:31", 8),
                          window=WindowState(at("08:30", 8), attempts=1, last_exit_code=0))
    d = decide(rule, state, policy, at("11:30"))
    assert (d.action, d.window) == ("run", at("08:30"))


def test_skipped_windows_after_downtime_are_counted_as_without_a_delay() -> None:
    rule = hourly()
    state = ScheduleState(last_start=at("03:01", second=30), last_success=at("03:02"),
                          window=WindowState(at("03:00"), attempts=1, last_exit_code=0))
    plain = decide(rule, state, POLICY, at("09:10"))
    jittered = decide(rule, state, JITTERED, at("09:10"))
    assert (plain.action, plain.window, plain.skipped, plain.first_skipped) == (
        "run", at("09:00"), 5, at("04:00"))
    assert (jittered.action, jittered.window, jittered.skipped, jittered.first_skipped) == (
        plain.action, plain.window, plain.skipped, plain.first_skipped)


def test_health_does_not_call_a_window_late_before_its_delayed_instant() -> None:
    rule = daily("08:30")
    done = ScheduleState(last_start=at("08:31", 8, 30), last_success=at("08:32", 8),
                         window=WindowState(at("08:30", 8), attempts=1, last_exit_code=0))
    assert health(rule, done, JITTERED, at("08:31")).state == "ok"
    assert health(rule, done, POLICY, at("08:31")).state == "degraded"
    late = health(rule, done, JITTERED, at("08:41", second=30))
    assert (late.state, late.reason) == ("degraded", "window 10m ago has not run yet")


def test_intervals_have_no_delay() -> None:
    rule = IntervalRule(60)
    state = ScheduleState(last_start=at("08:00"), last_success=at("08:01"))
    assert decide(rule, state, JITTERED, at("09:00")).action == "run"
    assert next_due(rule, state, JITTERED, at("08:30")) == at("09:00")


# -- the manifest ----------------------------------------------------------------------------
BASE = """\
[agent]
name = "report"
[run]
command = "true"
[[schedules]]
id = "daily"
type = "cron"
weekdays = []
hours = [8]
"""


def load(text: str):  # type: ignore[no-untyped-def]
    return parse_manifest(textwrap.dedent(text).encode(), Path("agents/x/agent.toml"))


def test_manifest_jitter_gives_the_policy_its_delay() -> None:
    r = load(BASE + "jitter_seconds = 600\n")
    assert r.ok, r.errors
    m = r.manifest
    assert m is not None
    policy = m.policy(m.schedules[0], salt=b"salt")
    assert policy.delay == fixed_delay(b"salt", "report", "daily", 600) > timedelta(0)
    assert m.policy(m.schedules[0], salt=b"other").delay != policy.delay


def test_defaults_jitter_applies_to_calendar_schedules_only() -> None:
    text = BASE.replace("[run]", "[defaults]\njitter_seconds = 300\n[run]") + textwrap.dedent("""
        [[schedules]]
        id = "often"
        type = "interval"
        interval_minutes = 5
        [[schedules]]
        id = "own"
        type = "expression"
        expression = "hourly"
        jitter_seconds = 0
    """)
    r = load(text)
    assert r.ok, r.errors
    m = r.manifest
    assert m is not None
    daily_, often, own = m.schedules
    assert m.jitter_seconds(daily_) == 300
    assert m.policy(daily_, salt=b"s").delay == fixed_delay(b"s", "report", "daily", 300)
    assert m.jitter_seconds(often) == 0 and m.policy(often, salt=b"s").delay == timedelta(0)
    assert m.jitter_seconds(own) == 0 and m.policy(own, salt=b"s").delay == timedelta(0)


def test_jitter_is_clamped_to_a_day_with_a_warning() -> None:
    r = load(BASE + "jitter_seconds = 100000\n")
    assert r.ok
    assert [str(w) for w in r.warnings] == [
        "agents/x/agent.toml:10: schedules[0].jitter_seconds: 100000 → 86400 (safety limit: "
        "at most 86400 seconds (one day))"]
    assert r.manifest is not None and r.manifest.jitter_seconds(r.manifest.schedules[0]) == 86400


@pytest.mark.parametrize(("snippet", "message"), [
    ("jitter_seconds = -1\n",
     "agents/x/agent.toml:10: schedules[0].jitter_seconds: -1 is out of range (0..86400)"),
    ("jitter_seconds = 1.5\n",
     "agents/x/agent.toml:10: schedules[0].jitter_seconds: expected an integer, got a float "
     "(1.5)"),
])
def test_bad_jitter_is_a_located_error(snippet: str, message: str) -> None:
    assert [str(e) for e in load(BASE + snippet).errors] == [message]


def test_jitter_on_an_interval_schedule_is_an_error() -> None:
    text = BASE.replace('type = "cron"\nweekdays = []\nhours = [8]',
                        'type = "interval"\ninterval_minutes = 5') + "jitter_seconds = 30\n"
    errs = [str(e) for e in load(text).errors]
    assert len(errs) == 1
    assert errs[0].startswith("agents/x/agent.toml:9: schedules[0].jitter_seconds: does not "
                              "apply to interval schedules")


# -- doctor, tick and the scheduler agree -----------------------------------------------------
def test_doctor_shows_the_delay_and_tick_plans_with_it(tmp_path: Path, cli_env: dict[str, str],
                                                       dotagent_home: Path) -> None:
    from helpers import dotagent, write_agent

    write_agent(tmp_path / "agents", "report", """
        [agent]
        name = "report"
        [run]
        command = "true"
        [security]
        [[schedules]]
        id = "new-year"
        type = "expression"
        expression = "2099-01-01 00:00:00 UTC"
        jitter_seconds = 86400
    """)
    cli_env["DOTAGENT_ROOT"] = str(tmp_path / "agents")
    delay = fixed_delay(jitter_salt(Home(dotagent_home)), "report", "new-year", 86400)
    fire = datetime(2099, 1, 1, tzinfo=UTC) + delay
    shown = []
    for _ in range(2):  # the same in every process
        r = dotagent("doctor", "--json", env=cli_env)
        assert r.returncode == 0, r.stdout + r.stderr
        (agent,) = json.loads(r.stdout)["manifests"]
        (sched,) = agent["schedules"]
        shown.append((sched["jitter_seconds"], sched["delay_seconds"], sched["next_fire"]))
    assert shown[0] == shown[1]
    assert shown[0][:2] == (86400, delay.total_seconds())
    assert datetime.fromisoformat(shown[0][2]) == fire.replace(microsecond=0)
    text = dotagent("doctor", env=cli_env).stdout
    assert f"(jitter_seconds = 86400: fires {delay.total_seconds():.3f} s after each calendar " \
           "instant)" in text
    r = dotagent("tick", "--dry-run", "--json", env=cli_env)
    assert r.returncode == 0, r.stderr
    planned = json.loads(r.stdout)
    assert planned["dispatched"] == [] and planned["settled"] == []
    assert datetime.strptime(planned["next_event"], "%Y-%m-%dT%H:%M:%S%z") == \
        fire.replace(microsecond=0)


def test_the_daemon_dispatches_at_the_delayed_instant(tmp_path: Path,
                                                      dotagent_home: Path) -> None:
    """The daemon's step asks the same scheduler: no special case in the loop."""
    from dotagent.config import Config
    from dotagent.daemon.loop import Daemon
    from dotagent.state.windows import WindowStore

    from helpers import write_agent

    write_agent(tmp_path / "agents", "report", """
        [agent]
        name = "report"
        [run]
        command = "true"
        [[schedules]]
        id = "minutely"
        type = "expression"
        expression = "*-*-* *:*:00 UTC"
        jitter_seconds = 50
    """)
    home = Home(dotagent_home)
    delay = fixed_delay(jitter_salt(home), "report", "minutely", 50)
    base = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    WindowStore(home, zone=UTC).save("report", "default", "minutely", WindowState(
        base, attempts=1, last_attempt_at=base + delay, last_exit_code=0))
    daemon = Daemon(home, Config(), env={"DOTAGENT_ROOT": str(tmp_path / "agents"),
                                         "DOTAGENT_HOME": str(dotagent_home)},
                    zone=UTC, log=lambda text: None)
    dispatched: list[tuple[str, datetime | None, int]] = []
    daemon.dispatch = lambda entry, window, attempt, now: dispatched.append(  # type: ignore
        (entry.schedule.id, window, attempt))
    try:
        before = base + timedelta(minutes=1) + delay - timedelta(milliseconds=1)
        assert daemon.step(before) == base + timedelta(minutes=1) + delay
        assert dispatched == []
        daemon.step(base + timedelta(minutes=1) + delay)
        assert dispatched == [("minutely", base + timedelta(minutes=1), 1)]
    finally:
        daemon.executor.shutdown()
        daemon.history.close()
