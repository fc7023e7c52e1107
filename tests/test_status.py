"""`status`, `inspect` and `next` (issue 10 items 1, 2, 5) against a real home whose state
was left by real runs (`dotagent tick`, `dotagent run-now`)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dotagent.api.service import next_report, status_report
from dotagent.paths import Home
from dotagent.state.pause import Pauses

from helpers import DOTAGENT, dotagent, write_agent


def _agent(home: Path, name: str, exit_code: int, *, schedule: str | None = None,
           extra: str = "") -> Path:
    sched = schedule or 'type = "interval"\ninterval_minutes = 60'
    return write_agent(home / "agents", name, f"""
        [agent]
        name = "{name}"
        timeout_seconds = 30
        {extra}
        [run]
        command = "./run.sh"
        [defaults]
        max_retries = 2
        retry_backoff_minutes = [5]
        [[schedules]]
        id = "main"
        {sched}
        """, files={"run.sh": f"#!/bin/sh\necho {name}\nexit {exit_code}\n"})


def _status(env: dict[str, str]) -> dict:
    p = dotagent("status", "--json", env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture
def ran(dotagent_home: Path, cli_env: dict[str, str]) -> dict[str, str]:
    """good (exit 0), bad (exit 3), quiet (monitor = false): one real `tick` ran what was
    due (every never-started interval schedule)."""
    _agent(dotagent_home, "good", 0)
    _agent(dotagent_home, "bad", 3)
    _agent(dotagent_home, "quiet", 0, extra="monitor = false")
    p = dotagent("tick", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert "dispatched 2" in p.stdout, p.stdout
    return cli_env


def test_status_json_shape_failing_first(ran: dict[str, str], dotagent_home: Path) -> None:
    data = _status(ran)
    assert list(data) == ["home", "now", "daemon", "counts", "schedules", "running",
                          "problems", "notes"]
    assert data["home"] == str(dotagent_home)
    assert data["daemon"] == {"running": False, "pid": None, "since": None}
    assert data["counts"] == {"total": 2, "failing": 1, "degraded": 0, "stale": 0,
                              "paused": 0, "ok": 1}
    bad, good = data["schedules"]  # failing first; `quiet` (monitor = false) left out
    assert list(bad) == ["agent", "schedule", "state", "reason", "last_run",
                         "last_outcome", "last_exit_code", "next_run", "paused",
                         "snoozed_until"]
    assert (bad["agent"], bad["schedule"], bad["state"]) == ("bad", "main", "failing")
    assert re.fullmatch(r"1 failed attempt\(s\), retrying at \d\d:\d\d", bad["reason"])
    assert (bad["last_outcome"], bad["last_exit_code"]) == ("failed", 3)
    assert bad["paused"] is False and bad["snoozed_until"] is None
    assert (good["agent"], good["state"], good["reason"]) == ("good", "ok", "ok")
    assert (good["last_outcome"], good["last_exit_code"]) == ("ok", 0)
    last = datetime.fromisoformat(good["last_run"])
    nxt = datetime.fromisoformat(good["next_run"])
    assert 3590 <= (nxt - last).total_seconds() <= 3610  # an hour after the run's start
    retry = datetime.fromisoformat(bad["next_run"])
    assert 290 <= (retry - datetime.fromisoformat(bad["last_run"])).total_seconds() <= 310
    assert data["running"] == [] and data["problems"] == [] and data["notes"] == []


def test_a_failed_run_now_is_never_ok(ran: dict[str, str], dotagent_home: Path) -> None:
    assert _status(ran)["schedules"][1]["state"] == "ok"
    script = dotagent_home / "agents" / "good" / "run.sh"
    script.write_text("#!/bin/sh\nexit 5\n")
    p = dotagent("run-now", "good", env=ran)
    assert p.returncode == 0, p.stderr
    rows = {r["agent"]: r for r in _status(ran)["schedules"]}
    assert rows["good"]["state"] == "failing"
    assert rows["good"]["reason"].startswith("latest run failed (run-now at ")
    assert rows["good"]["reason"].endswith(", exit 5)")
    assert rows["good"]["last_exit_code"] == 5


def test_a_paused_schedule_is_paused_not_failing(ran: dict[str, str],
                                                 dotagent_home: Path) -> None:
    now = time.time()
    Pauses(Home(dotagent_home)).pause("bad", "main", None, now)
    data = _status(ran)
    assert data["counts"]["failing"] == 0 and data["counts"]["paused"] == 1
    bad = next(r for r in data["schedules"] if r["agent"] == "bad")
    assert bad["state"] == "paused" and bad["reason"].endswith("until resumed")
    assert set(bad["paused"]) == {"since", "until"} and bad["paused"]["until"] is None
    assert abs(datetime.fromisoformat(bad["paused"]["since"]).timestamp() - now) < 2
    assert bad["next_run"] is None
    fires = json.loads(dotagent("next", "-n", "5", "--json", env=ran).stdout)
    assert {f["agent"] for f in fires} == {"good"}  # a paused schedule has no fire


def test_a_timed_pause_shows_until_and_resumes_after(ran: dict[str, str],
                                                     dotagent_home: Path) -> None:
    now = time.time()
    Pauses(Home(dotagent_home)).pause("good", None, int(now) + 7200, now)
    good = next(r for r in _status(ran)["schedules"] if r["agent"] == "good")
    assert good["state"] == "paused"
    assert datetime.fromisoformat(good["paused"]["until"]).timestamp() == int(now) + 7200
    assert datetime.fromisoformat(good["next_run"]).timestamp() >= int(now) + 7200


def test_status_readable_without_colour(ran: dict[str, str]) -> None:
    env = dict(ran, NO_COLOR="1", COLUMNS="100")
    out = _on_a_tty([DOTAGENT, "status"], env)
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0].startswith("═══ Agent Health · ")
    assert "daemon: not running" in lines[1]
    assert "❌ failing 1" in out and "✅ ok 1/2" in out
    table = [ln for ln in lines if ln.startswith(("AGENT/SCHEDULE", "bad/", "good/"))]
    assert [ln.split()[0] for ln in table] == ["AGENT/SCHEDULE", "bad/main", "good/main"]
    assert all(len(ln) <= 100 for ln in lines if not ln.startswith("Logs:"))
    coloured = _on_a_tty([DOTAGENT, "status"], {k: v for k, v in env.items()
                                                 if k != "NO_COLOR"})
    assert "\x1b[" in coloured  # the same terminal without NO_COLOR does get colour


def test_narrow_terminal_cuts_the_reason(ran: dict[str, str]) -> None:
    p = dotagent("status", env=dict(ran, COLUMNS="60"))
    assert all(len(line) <= 60 for line in p.stdout.splitlines()
               if not line.startswith(("Logs:", "═══")))
    assert "…" in p.stdout


def _on_a_tty(argv: list[str], env: dict[str, str]) -> str:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower,
                                stderr=subprocess.STDOUT, env=env)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


# -- inspect ---------------------------------------------------------------------------------
def test_inspect_json_shape(ran: dict[str, str], dotagent_home: Path) -> None:
    p = dotagent("inspect", "bad", "--json", env=ran)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert list(data) == ["agent", "description", "path", "sha256", "known", "monitor",
                          "timeout_seconds", "clamps", "schedules", "runs", "notes"]
    manifest = dotagent_home / "agents" / "bad" / "agent.toml"
    import hashlib

    assert data["path"] == str(manifest)
    assert data["sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    known = json.loads((dotagent_home / "state" / "known_manifests.json").read_text())
    entry = known["entries"]["bad"]
    assert data["known"] == {"sha256": entry["sha256"], "first_seen": entry["first_seen_at_iso"],
                             "last_seen": entry["last_seen_at_iso"], "matches": True}
    assert (data["monitor"], data["timeout_seconds"], data["clamps"]) == (True, 30, [])
    (s,) = data["schedules"]
    assert list(s) == ["id", "slug", "type", "expression", "timezone", "args", "policy",
                       "state", "reason", "paused", "snoozed_until", "next_fires",
                       "heartbeat", "window"]
    assert (s["id"], s["slug"], s["type"], s["expression"]) == \
        ("main", "default", "interval", "every 60 min")
    assert s["policy"] == {"max_retries": 2, "retry_backoff_minutes": [5],
                           "stale_after_minutes": 120, "jitter_seconds": 0,
                           "delay_seconds": 0.0, "success_exit_codes": [],
                           "no_retry_exit_codes": []}
    assert s["state"] == "failing"
    kinds = [f["kind"] for f in s["next_fires"]]
    assert kinds == ["retry", "window", "window", "window", "window"]
    ats = [datetime.fromisoformat(f["at"]) for f in s["next_fires"]]
    assert ats == sorted(ats)
    assert s["heartbeat"]["exit_code"] == 3 and s["heartbeat"]["name"] == "bad"
    assert s["window"]["attempts"] == 1 and s["window"]["last_exit_code"] == 3
    assert s["window"]["given_up"] is False and s["window"]["missed"] is False
    (run,) = data["runs"]
    assert list(run) == ["id", "schedule", "source", "attempt", "started_at", "finished_at",
                         "duration_seconds", "exit_code", "timed_out", "outcome"]
    assert (run["schedule"], run["source"], run["attempt"], run["exit_code"],
            run["outcome"]) == ("main", "tick", 1, 3, "failed")


def test_inspect_readable(ran: dict[str, str]) -> None:
    p = dotagent("inspect", "good", env=dict(ran, NO_COLOR="1"))
    assert p.returncode == 0, p.stderr
    assert "agent:        good" in p.stdout
    assert "─── schedule 'main' (slug=default) ───" in p.stdout
    assert "health: ok — ok" in p.stdout and "first seen " in p.stdout
    assert "\x1b" not in p.stdout


def test_inspect_unknown_agent(ran: dict[str, str]) -> None:
    p = dotagent("inspect", "nope", env=ran)
    assert p.returncode == 1
    assert p.stderr.strip() == ("Error: agent not found: 'nope' (known agents: 'bad', "
                                "'good', 'quiet')")
    assert "Traceback" not in p.stderr


# -- next --------------------------------------------------------------------------------------
def _systemd_elapses(expression: str, base: str, n: int) -> list[datetime]:
    out = subprocess.run(["systemd-analyze", "calendar", f"--iterations={n}",
                          f"--base-time={base}", expression], capture_output=True, text=True,
                         env=dict(os.environ, TZ="UTC"), check=True).stdout
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", out)
    return [datetime.fromisoformat(s).replace(tzinfo=UTC) for s in stamps]


def test_next_merges_fires_like_systemd(dotagent_home: Path) -> None:
    exprs = {"weekdays": "Mon..Fri *-*-* 09:30", "early": "*-*-* 06,18:00:00",
             "monthly": "*-*-01 12:00:00"}
    for name, expr in exprs.items():
        _agent(dotagent_home, name, 0, schedule=f'type = "expression"\nexpression = "{expr}"')
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    env = {"DOTAGENT_HOME": str(dotagent_home), "TZ": "UTC"}
    home = Home(dotagent_home)
    report = next_report(home, env, now, count=12, zone=UTC)
    expected = sorted((at, name) for name, expr in exprs.items()
                      for at in _systemd_elapses(expr, "2026-12-02 12:00:00 UTC", 12))[:12]
    # What is due at `now` (each latest window, never run) is too old to run: recorded as
    # missed, not fired. So windows only, as systemd lists them.
    assert [(f.at, f.agent) for f in report.fires] == expected
    assert all(f.kind == "window" and f.schedule == "main" for f in report.fires)
    assert [f.in_seconds for f in report.fires] == \
        [(at - now).total_seconds() for at, _ in expected]
    in_two_days = next_report(home, env, now, hours=48, zone=UTC)
    assert [(f.at, f.agent) for f in in_two_days.fires] == \
        [e for e in expected if (e[0] - now).total_seconds() <= 48 * 3600]


def test_next_cli_json_and_usage(ran: dict[str, str]) -> None:
    p = dotagent("next", "-n", "3", "--json", env=ran)
    assert p.returncode == 0, p.stderr
    fires = json.loads(p.stdout)
    assert len(fires) == 3
    for f in fires:
        assert list(f) == ["agent", "schedule", "at", "in_seconds", "kind"]
    # bad ran first (discovery order): its retry, its next window, then good's window.
    assert [f["agent"] for f in fires] == ["bad", "bad", "good"]
    assert [f["kind"] for f in fires] == ["retry", "window", "window"]
    assert [f["in_seconds"] for f in fires] == sorted(f["in_seconds"] for f in fires)
    both = dotagent("next", "-n", "3", "--hours", "2", env=ran)
    assert both.returncode == 2 and "cannot be combined" in both.stderr
    plain = dotagent("next", env=dict(ran, NO_COLOR="1"))
    assert plain.stdout.splitlines()[0].split() == ["NEXT", "LEFT", "KIND", "AGENT/SCHEDULE"]


# -- health: a window skipped because the agent was still running ------------------------------
def test_a_window_skipped_for_an_overlap_is_not_stale(dotagent_home: Path) -> None:
    from datetime import timedelta

    from dotagent.schedule.oncalendar import parse_cached
    from dotagent.schedule.rules import calendar_rule
    from dotagent.schedule.windows import (
        Policy,
        ScheduleState,
        WindowState,
        health,
    )

    rule = calendar_rule(parse_cached("*-*-* *:00/5:00"), UTC)  # type: ignore[arg-type]
    policy = Policy(3, (5,), 120)
    nine = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    ran = ScheduleState(last_start=nine - timedelta(minutes=5),
                        last_success=nine + timedelta(minutes=1),
                        window=WindowState(nine, missed=True))
    h = health(rule, ran, policy, nine + timedelta(minutes=2))
    assert h.state == "ok" and "skipped: the agent was still running" in h.reason
    failed = ScheduleState(last_start=nine - timedelta(minutes=5), last_success=None,
                           window=WindowState(nine, missed=True))
    assert health(rule, failed, policy, nine + timedelta(minutes=2)).state == "failing"
    # Once older than stale_after_minutes, a missed window is stale as before.
    assert health(rule, ran, policy, nine + timedelta(minutes=121)).state != "ok"


def test_status_report_in_process_sees_the_same(ran: dict[str, str],
                                                dotagent_home: Path) -> None:
    report = status_report(Home(dotagent_home), ran, datetime.now(UTC))
    assert [r.agent for r in report.rows] == ["bad", "good"]
    assert report.counts["failing"] == 1
