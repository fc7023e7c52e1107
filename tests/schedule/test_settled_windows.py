"""Windows settled without a run (`paused`, `bootstrap`): never run or retried, the next
window is the next decision, and health judges nothing late until that next window is. The
window file keeps the reason; the settling helpers of the daemon layer decide what a pause
makes of a decision. A fake clock throughout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dotagent.daemon.settle import active_pause, bootstrap_plan, covering_pause, pause_verdict
from dotagent.daemon.tick import Entry
from dotagent.manifest import parse_manifest
from dotagent.paths import Home
from dotagent.schedule.windows import (
    CalendarRule,
    Decision,
    IntervalRule,
    Policy,
    ScheduleState,
    WindowState,
    decide,
    health,
    next_due,
)
from dotagent.state.pause import Pause
from dotagent.state.windows import WindowStore

POLICY = Policy(max_retries=2, retry_backoff_minutes=(5,), stale_after_minutes=30)


def at(hhmm: str, day: int = 9) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 3, day, h, m, tzinfo=UTC)


def hourly() -> CalendarRule:
    def next_after(t: datetime) -> datetime:
        return t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return CalendarRule(next_after)


# -- the scheduler -----------------------------------------------------------------------
def test_a_settled_calendar_window_is_not_run_and_the_next_one_is() -> None:
    for why in ("paused", "bootstrap"):
        state = ScheduleState(window=WindowState(expected_at=at("10:00"), settled=why))
        d = decide(hourly(), state, POLICY, at("10:20"))
        assert (d.action, d.wake_at) == ("idle", at("11:00"))
        assert next_due(hourly(), state, POLICY, at("10:20")) == at("11:00")
        assert decide(hourly(), state, POLICY, at("11:00")) == Decision(
            "run", at("11:00"), attempt=1)


def test_a_settled_window_supersedes_a_retry_in_progress() -> None:
    # 09:00 failed once (a retry was due at 09:05); 10:00 came due while paused and was
    # settled: nothing of 09:00 is retried afterwards.
    state = ScheduleState(last_start=at("09:00"),
                          window=WindowState(expected_at=at("10:00"), settled="paused"))
    assert decide(hourly(), state, POLICY, at("10:30")).action == "idle"


def test_health_of_a_settled_calendar_window() -> None:
    never = ScheduleState(window=WindowState(expected_at=at("10:00"), settled="bootstrap"))
    assert health(hourly(), never, POLICY, at("10:40")).state == "ok"
    assert health(hourly(), never, POLICY, at("10:40")).reason == "window settled by bootstrap"
    ran = ScheduleState(last_start=at("08:00"), last_success=at("08:00"),
                        window=WindowState(expected_at=at("10:00"), settled="paused"))
    assert (health(hourly(), ran, POLICY, at("10:40")).state,
            health(hourly(), ran, POLICY, at("10:40")).reason) == (
        "ok", "window skipped while paused")
    # The next window is judged as any window: late, then stale past stale_after_minutes.
    assert health(hourly(), never, POLICY, at("11:10")).state == "degraded"
    assert health(hourly(), never, POLICY, at("11:31")).state == "stale"


def test_a_settled_interval_window_moves_its_anchor_for_health_not_its_phase() -> None:
    rule = IntervalRule(minutes=60)
    # Ran at 08:00; 09:00 and 10:00 came due while paused and were settled.
    state = ScheduleState(last_start=at("08:00"), last_success=at("08:00"),
                          window=WindowState(expected_at=at("10:00"), settled="paused"))
    assert health(rule, state, POLICY, at("10:30")).state == "ok"
    assert decide(rule, state, POLICY, at("10:30")).action == "idle"
    assert next_due(rule, state, POLICY, at("10:30")) == at("11:00")  # the phase of 08:00
    assert health(rule, state, POLICY, at("11:20")).state == "degraded"
    # A never-started interval settled by bootstrap counts from that window.
    fresh = ScheduleState(window=WindowState(expected_at=at("10:07"), settled="bootstrap"))
    assert health(rule, fresh, POLICY, at("10:30")).state == "ok"
    assert next_due(rule, fresh, POLICY, at("10:30")) == at("11:07")


# -- the window file -----------------------------------------------------------------------
def test_the_window_file_keeps_why_it_was_settled(tmp_path: Path) -> None:
    problems: list[tuple[Path, str]] = []
    store = WindowStore(Home(tmp_path), zone=UTC,
                        on_problem=lambda p, m: problems.append((p, m)))
    state = WindowState(expected_at=at("10:00"), settled="paused")
    store.save("a", "default", "main", state)
    path = store.path("a", "default", at("10:00"))
    data = json.loads(path.read_text())
    assert data["settled"] == "paused" and "missed" not in data and data["attempts"] == 0
    assert store.load("a", "default", at("10:00")) == state
    data["settled"] = "whatever"
    path.write_text(json.dumps(data))
    assert store.load("a", "default", at("10:00")) == WindowState(expected_at=at("10:00"))
    [(_, message)] = problems
    assert message == 'settled is "whatever", not "paused" or "bootstrap"; read as null'


# -- what a pause makes of a decision -------------------------------------------------------
def _entry(tmp_path: Path, state: ScheduleState) -> Entry:
    toml = tmp_path / "agent.toml"
    toml.write_text('[agent]\nname = "a"\n[run]\ncommand = "/bin/true"\n'
                    '[[schedules]]\nid = "main"\ntype = "cron"\nweekdays = []\nhours = []\n')
    result = parse_manifest(toml.read_bytes(), toml)
    assert result.manifest is not None
    from dotagent.manifest import LoadedManifest

    loaded = LoadedManifest(path=toml, manifest=result.manifest, sha256="0" * 64)
    return Entry(loaded, result.manifest.schedules[0], hourly(), POLICY, state)


def test_pause_verdicts(tmp_path: Path) -> None:
    entry = _entry(tmp_path, ScheduleState())
    ts = at("10:30").timestamp()
    open_ended = {"a": Pause("a", int(at("10:10").timestamp()), None)}
    run = Decision("run", at("10:00"), attempt=1)
    retry = Decision("retry", at("10:00"), attempt=2)
    assert pause_verdict(entry, run, open_ended, at("10:30")) == ("settle", open_ended["a"])
    assert pause_verdict(entry, retry, open_ended, at("10:30")) == ("hold", open_ended["a"])
    assert pause_verdict(entry, Decision("idle", at("10:00")), open_ended, at("10:30")) is None
    assert active_pause(open_ended, "a", "main", ts) is not None
    assert active_pause(open_ended, "b", "main", ts) is None
    # A pause that has ended still settles a window that came due inside it (nobody looked
    # while it held), but holds nothing any more.
    ended = {"a/main": Pause("a/main", int(at("09:30").timestamp()),
                             int(at("10:15").timestamp()))}
    assert pause_verdict(entry, run, ended, at("10:30")) == ("settle", ended["a/main"])
    assert pause_verdict(entry, retry, ended, at("10:30")) is None
    assert pause_verdict(entry, Decision("run", at("10:20"), attempt=1), ended,
                         at("10:30")) is None
    assert covering_pause(ended, "a", "other", at("10:00").timestamp()) is None


def test_bootstrap_plan_settles_only_what_nothing_handled(tmp_path: Path) -> None:
    now = at("10:20")
    unrecorded = _entry(tmp_path, ScheduleState(last_start=at("08:00"),
                                                last_success=at("08:00"),
                                                window=WindowState(expected_at=at("08:00"),
                                                                   attempts=1,
                                                                   last_exit_code=0)))
    [item] = bootstrap_plan([unrecorded], now)
    assert (item.window, item.was) == (at("10:00"), "unrecorded")
    missed = _entry(tmp_path, ScheduleState(window=WindowState(expected_at=at("10:00"),
                                                               missed=True)))
    assert [(i.window, i.was) for i in bootstrap_plan([missed], now)] == [
        (at("10:00"), "missed")]
    handled = [
        _entry(tmp_path, ScheduleState(window=WindowState(expected_at=at("10:00"),
                                                          settled="bootstrap"))),
        _entry(tmp_path, ScheduleState(last_start=at("10:00"), window=WindowState(
            expected_at=at("10:00"), attempts=1, last_attempt_at=at("10:00"),
            last_exit_code=1))),  # retrying: its own business
    ]
    assert bootstrap_plan(handled, now) == []
