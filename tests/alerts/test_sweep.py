"""The health sweep's decisions and routing with a fake clock: stale goes out on the `stale`
channel, falls back to `given_up`, and with nobody listening nothing is sent or recorded;
given up is announced once, reminded on the ladder, cleared by a healthy window; snoozes
silence and expire; duration anomalies from real SQLite history rows."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts_kit import GIVEN_UP, HEALTHY, NINE, NOW, STALE, Recorder, agent, with_state
from dotagent.alerts import anomaly
from dotagent.alerts.service import Alerts, route
from dotagent.alerts.snooze import Snoozes, parse_duration
from dotagent.config import Config, parse_config
from dotagent.paths import Home
from dotagent.schedule.windows import WindowState
from dotagent.state.history import History


def test_route_prefers_stale_then_given_up_then_nobody() -> None:
    assert route("stale", [{"driver": "x", "events": ["stale"]}]) == "stale"
    assert route("stale", [{"driver": "x"}]) == "stale"  # empty events: every event
    assert route("stale", [{"driver": "x", "events": ["given_up"]}]) == "given_up"
    assert route("stale", [{"driver": "x", "events": ["success"]}]) is None


@pytest.mark.parametrize(("events", "channel"), [('["stale"]', "stale"),
                                                  ('["given_up"]', "given_up")])
def test_stale_routing_and_fallback(dotagent_home: Path, events: str, channel: str) -> None:
    entry = with_state(agent(dotagent_home, "a", f"""
        [[notifiers]]
        driver = "desktop"
        events = {events}
        """), **STALE)
    sender = Recorder()
    alerts = Alerts(Home(dotagent_home), Config(), sender, zone=UTC)
    alerts.sweep([entry], NOW)
    (message, entries), = sender.sent
    assert message.event == channel and message.agent == "a"
    assert message.body == "⏰ a/main is not being scheduled — no successful run in 2d 3h."
    assert entries[0]["driver"] == "desktop"
    ladder = json.loads((dotagent_home / "state/notify/alerts.json").read_text())
    assert ladder["episodes"]["a/main/stale"]["count"] == 1


def test_nobody_listening_sends_and_records_nothing(dotagent_home: Path) -> None:
    entry = with_state(agent(dotagent_home, "a", """
        [[notifiers]]
        driver = "desktop"
        events = ["success"]
        """), **STALE)
    sender = Recorder()
    Alerts(Home(dotagent_home), Config(), sender, zone=UTC).sweep([entry], NOW)
    assert sender.sent == []
    assert not (dotagent_home / "state/notify/alerts.json").exists()


def test_given_up_announced_once_reminded_on_ladder_cleared_when_healthy(
        dotagent_home: Path) -> None:
    base = agent(dotagent_home, "a", """
        [[notifiers]]
        driver = "desktop"
        """)
    entry = with_state(base, **GIVEN_UP)
    sender = Recorder()
    alerts = Alerts(Home(dotagent_home), Config(), sender, zone=UTC)
    for minutes in (0, 1, 30, 59):  # every wake within the hour: one notice
        alerts.sweep([replace(entry, state=replace(entry.state))],
                     NOW + timedelta(minutes=minutes))
    assert [m.body for m, _ in sender.sent] == ["🚨 a/main gave up after 2 attempts (exit 3)"]
    assert sender.sent[0][0].critical
    assert alerts.next_wake(NOW + timedelta(minutes=59)) == NOW + timedelta(hours=1)
    alerts.sweep([entry], NOW + timedelta(hours=1))
    assert sender.sent[-1][0].body == (
        "🚨 a/main still given up after 2 attempts (exit 3), 1h 0m ago (notice #2).")
    assert not sender.sent[-1][0].critical  # reminders wait for the end of quiet hours
    alerts.sweep([with_state(base, **HEALTHY)], NOW + timedelta(hours=2))
    assert json.loads((dotagent_home / "state/notify/alerts.json").read_text()) == \
        {"episodes": {}}
    alerts.sweep([entry], NOW + timedelta(hours=2, minutes=1))  # a new episode
    assert sender.sent[-1][0].body == "🚨 a/main gave up after 2 attempts (exit 3)"
    assert len(sender.sent) == 3


def test_never_run_without_a_window_stays_quiet(dotagent_home: Path) -> None:
    entry = with_state(agent(dotagent_home, "a", '[[notifiers]]\ndriver = "desktop"\n'))
    sender = Recorder()
    Alerts(Home(dotagent_home), Config(), sender, zone=UTC).sweep([entry], NOW)
    assert sender.sent == []


def test_snooze_silences_then_expires(dotagent_home: Path) -> None:
    home = Home(dotagent_home)
    entry = with_state(agent(dotagent_home, "a", '[[notifiers]]\ndriver = "desktop"\n'),
                  **GIVEN_UP)
    Snoozes(home).set("a", None, int((NOW + timedelta(hours=2)).timestamp()),
                      NOW.timestamp())
    sender = Recorder()
    alerts = Alerts(home, Config(), sender, zone=UTC)
    alerts.sweep([entry], NOW)
    assert sender.sent == []
    assert not (dotagent_home / "state/notify/alerts.json").exists()  # not recorded either
    later = NOW + timedelta(hours=2, seconds=1)
    alerts.sweep([replace(entry, state=replace(entry.state))], later)
    assert [m.event for m, _ in sender.sent] == ["given_up"]
    # A schedule-only snooze covers that schedule only.
    Snoozes(home).set("a", "main", int((later + timedelta(hours=1)).timestamp()),
                      later.timestamp())
    assert Snoozes(home).until("a", "main", later.timestamp()) is not None
    assert Snoozes(home).until("a", "other", later.timestamp()) is None
    Snoozes(home).set("a", None, None, later.timestamp())  # `off` lifts them all
    assert Snoozes(home).table() == {}


def test_parse_duration() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    assert parse_duration("1d12h") == 86400 + 12 * 3600
    for bad in ("", "0m", "2", "h", "-1h", "2w", "400d"):
        assert parse_duration(bad) is None, bad


def _history(home: Path, durations: list[float], *, outcome: str = "ok") -> list[int]:
    ids = []
    with History(Home(home)) as h:
        t = 1_800_000_000.0
        for d in durations:
            run = h.begin(agent="a", schedule="main", slug="main", source="daemon",
                          started_at=t, attempt=1, window=None, manifest_sha256=None,
                          log_path=None, log_start=None)
            h.finish(run, finished_at=t + d, exit_code=0 if outcome == "ok" else 1,
                     outcome=outcome)
            ids.append(run)
            t += 3600
    return ids


def test_anomaly_thresholds_from_sqlite_history(dotagent_home: Path) -> None:
    _history(dotagent_home, [10.0] * 18 + [12.0, 12.0])  # p50 10 s, p95 12 s (nearest rank)
    with History(Home(dotagent_home)) as h:
        rows = h.query(agent="a", schedule="main", limit=60)
        prior = anomaly.baseline(rows, -1)
    assert len(prior) == 20
    assert anomaly.check(36.0, prior) is None  # exactly 3× p95: not more
    slow = anomaly.check(36.1, prior)
    assert slow is not None and slow.kind == "slow" and slow.p95 == 12.0
    assert anomaly.check(1.0, prior) is None  # exactly a tenth of p50
    fast = anomaly.check(0.9, prior)
    assert fast is not None and fast.kind == "fast" and fast.p50 == 10.0
    assert anomaly.check(30.0, prior[:4]) is None  # fewer than MIN_RUNS
    assert anomaly.check(0.01, [0.2] * 10) is None  # sub-second jitter never fires


def test_anomaly_fires_audit_and_message(dotagent_home: Path) -> None:
    ids = _history(dotagent_home, [10.0] * 8 + [95.0])
    entry = agent(dotagent_home, "a", '[[notifiers]]\ndriver = "desktop"\n'
                                       'events = ["duration_anomaly"]\n')
    recorded: list[Any] = []
    sender = Recorder()
    alerts = Alerts(Home(dotagent_home), Config(), sender, zone=UTC, record=recorded.append)
    with History(Home(dotagent_home)) as h:
        alerts.check_duration(entry, ids[-1], h, NOW)
        alerts.check_duration(entry, ids[3], h, NOW)  # an ordinary run: nothing
    (event,) = recorded
    assert event.fields() == {
        "event_type": "duration_anomaly", "agent": "a", "schedule": "main",
        "duration_ms": 95000, "p50_ms": 10000, "p95_ms": 10000, "runs": 8,
        "reason": "took 95.0s, more than 3× its p95 of 10.0s over its last 8 successful runs"}
    assert [m.event for m, _ in sender.sent] == ["duration_anomaly"]


def test_daemon_wide_notice_goes_to_config_notifiers(dotagent_home: Path) -> None:
    from dotagent.audit import events

    cfg = parse_config(b'[[notifiers]]\ndriver = "desktop"\nevents = ["orphan_reaped"]\n',
                       Path("c")).config
    assert cfg is not None
    sender = Recorder()
    alerts = Alerts(Home(dotagent_home), cfg, sender, zone=UTC)
    assert alerts.daemon_event(events.PhantomAgentDetected(agent="x", path="/p", sha256="s"),
                               NOW) == "nobody"  # filtered by `events`
    assert alerts.daemon_event(events.OrphanReaped(
        agent="x", kind="agent", label="x.main", pid=42, age_seconds=1,
        deadline_seconds=2), NOW) == "sent"
    (message, _), = sender.sent
    assert message.critical and "pid 42" in message.body
    assert Alerts(Home(dotagent_home), Config(), sender, zone=UTC).daemon_event(
        events.OrphanReaped(agent="x", kind="agent", label="l", pid=1, age_seconds=1,
                            deadline_seconds=1), NOW) == "nobody"


def test_first_given_up_from_the_run_then_the_sweep_only_reminds(dotagent_home: Path) -> None:
    from types import SimpleNamespace

    base = agent(dotagent_home, "a", '[[notifiers]]\ndriver = "desktop"\n')
    before = with_state(base, last_success=NINE - timedelta(days=1), last_start=NINE,
                   window=WindowState(expected_at=NINE, attempts=1, last_exit_code=3,
                                      last_attempt_at=NINE))
    after = WindowState(expected_at=NINE, attempts=2, last_exit_code=3,
                        last_attempt_at=NINE, given_up=True)
    report = SimpleNamespace(given_up=True, window=after, ok=False, history_id=None)
    sender = Recorder()
    alerts = Alerts(Home(dotagent_home), Config(), sender, zone=UTC)
    alerts.run_finished(before, report, NOW)
    assert [m.body for m, _ in sender.sent] == ["🚨 a/main gave up after 2 attempts (exit 3)"]
    alerts.sweep([replace(before, state=replace(before.state, window=after))],
                 NOW + timedelta(seconds=1))
    assert len(sender.sent) == 1  # the same failure is not announced twice


def test_unchanged_schedules_are_not_judged_again(dotagent_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import dotagent.alerts.service as service

    entry = with_state(agent(dotagent_home, "a", '[[notifiers]]\ndriver = "desktop"\n'), **HEALTHY)
    calls: list[int] = []
    real = service.health
    monkeypatch.setattr(service, "health", lambda *a: calls.append(1) or real(*a))
    alerts = Alerts(Home(dotagent_home), Config(), Recorder(), zone=UTC)
    for seconds in range(0, 60, 5):  # a wake every 5 s, nothing changed
        alerts.sweep([entry], NOW + timedelta(seconds=seconds))
    assert len(calls) == 1
    alerts.sweep([entry], NOW + timedelta(seconds=60))  # the once-a-minute look
    alerts.sweep([replace(entry, state=replace(entry.state))], NOW + timedelta(seconds=61))
    assert len(calls) == 3  # ... and a changed state is judged at once


def test_episodes_of_schedules_the_daemon_no_longer_has_end_when_their_reminder_is_due(
        dotagent_home: Path) -> None:
    ladder = dotagent_home / "state/notify/alerts.json"
    ladder.parent.mkdir(parents=True)
    two_hours_ago = int(NOW.timestamp()) - 7200
    ten_minutes_ago = int(NOW.timestamp()) - 600
    ladder.write_text(json.dumps({"episodes": {
        "ghost/main/given_up": {"first_notified_at": two_hours_ago,
                                "last_notified_at": two_hours_ago, "count": 1},  # due
        "ghost/other/stale": {"first_notified_at": ten_minutes_ago,
                              "last_notified_at": ten_minutes_ago, "count": 1},  # not yet
        "a/main/given_up": {"first_notified_at": two_hours_ago,
                            "last_notified_at": two_hours_ago, "count": 1},
    }}))
    entry = with_state(agent(dotagent_home, "a", """
        [[notifiers]]
        driver = "desktop"
        """), **GIVEN_UP)
    sender = Recorder()
    Alerts(Home(dotagent_home), Config(), sender, zone=UTC).sweep([entry], NOW)
    episodes = json.loads(ladder.read_text())["episodes"]
    assert sorted(episodes) == ["a/main/given_up", "ghost/other/stale"]
    assert episodes["a/main/given_up"]["count"] == 2  # the live one was reminded
    assert [m.agent for m, _ in sender.sent] == ["a"]
