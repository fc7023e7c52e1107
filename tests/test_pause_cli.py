"""`pause`, `resume` and `bootstrap` from the command line, and how `tick` and `run-now` treat
a paused agent: real homes, real runs (through `tick` / `run-now`), the real executable."""

from __future__ import annotations

import json
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugin_kit import audit_events

from helpers import dotagent, write_agent


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    cli_env["TZ"] = "UTC"
    return cli_env


def _runs(home: Path) -> list[dict[str, object]]:
    import sqlite3

    path = home / "state" / "history.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]
    finally:
        conn.close()


def _interval_agent(home: Path, name: str = "job", *, extra: str = "",
                    schedules: str | None = None) -> Path:
    return write_agent(home / "agents", name, f"""
        [agent]
        name = "{name}"
        timeout_seconds = 10
        {extra}
        [run]
        command = "/bin/sh"
        args = ["-c", "echo ran"]
        """ + (schedules or """
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        """))


def _daily_three_hours_ago(name: str) -> str:
    at = (datetime.now(UTC) - timedelta(hours=3)).strftime("%H:%M:%S")
    return f"""
        [agent]
        name = "{name}"
        [run]
        command = "/bin/true"
        [[schedules]]
        id = "daily"
        type = "expression"
        expression = "*-*-* {at}"
        stale_after_minutes = 1
        """


# -- pause / resume ------------------------------------------------------------------------
def test_pause_says_what_and_until_when_and_is_audited(dotagent_home: Path,
                                                       env: dict[str, str]) -> None:
    _interval_agent(dotagent_home)
    before = time.time()
    p = dotagent("pause", "job", "--for", "2h", env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    m = re.fullmatch(r"paused job \(every schedule\) until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC\n",
                     p.stdout)
    assert m is not None, p.stdout
    shown = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()
    assert before + 7200 - 60 <= shown <= time.time() + 7200

    path = dotagent_home / "state" / "paused.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = json.loads(path.read_text())["paused"]["job"]
    assert int(before) <= entry["since"] <= time.time()
    assert entry["until"] - entry["since"] in (7200, 7201)

    [event] = audit_events(dotagent_home, "agent_paused")
    assert list(event) == ["severity", "event_type", "agent", "schedule", "until_iso",
                           "reason"]
    assert (event["severity"], event["agent"], event["schedule"], event["reason"]) == (
        "notice", "job", "", "paused for 2h")
    assert datetime.strptime(str(event["until_iso"]), "%Y-%m-%dT%H:%M:%S%z").timestamp() \
        == entry["until"]

    # Paused again, until resumed: it says what it replaced.
    p = dotagent("pause", "job", env=env)
    assert p.stdout == (f"paused job (every schedule) until resumed (was paused until "
                        f"{m.group(1)} UTC)\n")
    assert json.loads(path.read_text())["paused"]["job"]["until"] is None
    assert [e["until_iso"] for e in audit_events(dotagent_home, "agent_paused")][1] == ""


def test_resume_lifts_every_pause_of_the_agent_and_says_when_nothing_is_paused(
        dotagent_home: Path, env: dict[str, str]) -> None:
    _interval_agent(dotagent_home, schedules="""
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        [[schedules]]
        id = "other"
        type = "interval"
        interval_minutes = 90
        args = ["other"]
        """)
    assert dotagent("pause", "job", "--schedule", "other", env=env).returncode == 0
    assert dotagent("pause", "job", env=env).returncode == 0
    # One schedule cannot be resumed out of a pause of the whole agent.
    p = dotagent("resume", "job", "--schedule", "main", env=env)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == ("Error: job/main is paused with the whole agent (until resumed); "
                        "`dotagent resume job` lifts that pause (every schedule of the "
                        "agent)\n")
    p = dotagent("resume", "job", env=env)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == ("resumed job (every schedule; it was paused until resumed)\n"
                        "resumed job/other (it was paused until resumed)\n")
    assert json.loads((dotagent_home / "state" / "paused.json").read_text()) == {"paused": {}}
    resumed = audit_events(dotagent_home, "agent_resumed")
    assert [(e["agent"], e["schedule"], e["severity"]) for e in resumed] == [
        ("job", "", "notice"), ("job", "other", "notice")]
    # Nothing paused: said, exit 0, no audit line.
    for args in (["job"], ["job", "--schedule", "main"]):
        p = dotagent("resume", *args, env=env)
        assert p.returncode == 0 and p.stderr == ""
        assert p.stdout.endswith(" is not paused; nothing to resume\n")
    assert len(audit_events(dotagent_home, "agent_resumed")) == 2


@pytest.mark.parametrize(("args", "code", "message"), [
    (["pause", "job", "--schedule", "../main"], 1,
     "Error: schedule id not found: '../main' (agent 'job' has: 'main')\n"),
    (["pause", "job", "--schedule", "main/x"], 1,
     "Error: schedule id not found: 'main/x' (agent 'job' has: 'main')\n"),
    (["pause", "../job"], 1, "Error: agent not found: '../job' (known agents: 'job')\n"),
    (["pause", "job/main"], 1, "Error: agent not found: 'job/main' (known agents: 'job')\n"),
    (["resume", "nope"], 1, "Error: agent not found: 'nope' (known agents: 'job')\n"),
    (["resume", "job", "-s", ".."], 1,
     "Error: schedule id not found: '..' (agent 'job' has: 'main')\n"),
    (["pause", "job", "--for", "10s"], 2, None),
    (["pause", "job", "--for", "0m"], 2, None),
    (["pause", "job", "--for", "367d"], 2, None),
])
def test_hostile_and_unknown_input_is_refused_and_nothing_is_written(
        dotagent_home: Path, env: dict[str, str], args: list[str], code: int,
        message: str | None) -> None:
    _interval_agent(dotagent_home)
    p = dotagent(*args, env=env)
    assert (p.returncode, p.stdout) == (code, "")
    if message is not None:
        assert p.stderr == message
    else:
        assert p.stderr.startswith(f"Error: invalid --for {args[-1]!r}: expected days, "
                                   "hours and minutes"), p.stderr
        assert p.stderr.count("\n") == 1
    assert not (dotagent_home / "state" / "paused.json").exists()
    assert audit_events(dotagent_home, "agent_paused") == []


# -- tick and run-now ------------------------------------------------------------------------
def test_tick_settles_a_paused_window_unrun_and_nothing_fires_on_resume(
        dotagent_home: Path, env: dict[str, str]) -> None:
    _interval_agent(dotagent_home)  # never started: due at once
    assert dotagent("pause", "job", env=env).returncode == 0
    p = dotagent("tick", "--dry-run", "--json", env=env)
    dry = json.loads(p.stdout)
    assert dry["dispatched"] == [] and [s["action"] for s in dry["settled"]] == ["paused"]
    assert not (dotagent_home / "state" / "windows").exists()  # a dry run writes nothing

    p = dotagent("tick", "--json", env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert list(out) == ["dry_run", "scanned", "dispatched", "settled", "paused",
                         "next_event"]
    assert (out["dry_run"], out["scanned"], out["dispatched"]) == (False, 1, [])
    [item] = out["settled"]
    assert list(item) == ["agent", "schedule", "window", "action"]
    assert (item["agent"], item["schedule"], item["action"]) == ("job", "main", "paused")
    assert out["paused"] == [{"agent": "job", "schedule": "main", "until": None}]
    window = datetime.strptime(item["window"], "%Y-%m-%dT%H:%M:%S%z")
    assert datetime.strptime(out["next_event"], "%Y-%m-%dT%H:%M:%S%z") == \
        window + timedelta(minutes=60)
    assert _runs(dotagent_home) == []
    [file] = (dotagent_home / "state" / "windows").glob("job-*.json")
    assert json.loads(file.read_text())["settled"] == "paused"

    p = dotagent("tick", env=env)  # the window is settled: nothing more to do
    assert p.stdout == ("scanned 1 agent(s); dispatched 0; next event: "
                        f"{out['next_event']}\n")
    assert dotagent("resume", "job", env=env).returncode == 0
    # Resumed: the next window is the next future one, not the one skipped while paused.
    out = json.loads(dotagent("tick", "--json", env=env).stdout)
    assert (out["dispatched"], out["settled"], out["paused"]) == ([], [], [])
    assert _runs(dotagent_home) == []
    assert audit_events(dotagent_home, "window_missed") == []


def test_tick_runs_an_agent_whose_pause_is_on_another_schedule(
        dotagent_home: Path, env: dict[str, str]) -> None:
    _interval_agent(dotagent_home, "job")
    _interval_agent(dotagent_home, "other")
    assert dotagent("pause", "other", env=env).returncode == 0
    out = json.loads(dotagent("tick", "--json", env=env).stdout)
    assert [(d["agent"], d["result"]["kind"], d["result"]["exit_code"])
            for d in out["dispatched"]] == [("job", "ran", 0)]
    assert [(s["agent"], s["action"]) for s in out["settled"]] == [("other", "paused")]
    assert [r["agent"] for r in _runs(dotagent_home)] == ["job"]


def test_run_now_of_a_paused_agent_runs_and_says_it_is_paused(
        dotagent_home: Path, env: dict[str, str]) -> None:
    _interval_agent(dotagent_home)
    assert dotagent("pause", "job", "--for", "30m", env=env).returncode == 0
    p = dotagent("run-now", "job", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("✓ job/main  ok")
    assert re.search(r"\[dotagent\] note: job/main is paused until \d{4}-\d\d-\d\d \d\d:\d\d "
                     r"UTC; running it anyway because it was asked for \(the daemon will "
                     r"not\)\n", p.stderr), p.stderr
    assert [(r["agent"], r["source"]) for r in _runs(dotagent_home)] == [("job", "run-now")]


# -- bootstrap ------------------------------------------------------------------------------
def test_bootstrap_settles_the_overdue_windows_once(dotagent_home: Path,
                                                    env: dict[str, str]) -> None:
    write_agent(dotagent_home / "agents", "daily", _daily_three_hours_ago("daily"))
    _interval_agent(dotagent_home, "fresh")
    _interval_agent(dotagent_home, "manual", extra="monitor = false")  # not scheduled

    p = dotagent("bootstrap", "--dry-run", "--json", env=env)
    assert p.returncode == 0, p.stderr
    dry = json.loads(p.stdout)
    assert list(dry) == ["dry_run", "schedules", "settled"]
    assert (dry["dry_run"], dry["schedules"]) == (True, 2)
    assert [(s["agent"], s["schedule"], s["was"]) for s in dry["settled"]] == [
        ("daily", "daily", "unrecorded"), ("fresh", "main", "unrecorded")]
    assert not (dotagent_home / "state" / "windows").exists()
    assert audit_events(dotagent_home, "windows_bootstrapped") == []

    p = dotagent("bootstrap", env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == ("settled 2 window(s) of 2 schedule(s); each runs next at its next "
                         "window")
    assert re.fullmatch(r"settled daily/daily: window \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                        lines[0]), lines
    assert lines[1].startswith("settled fresh/main: window ")
    [event] = audit_events(dotagent_home, "windows_bootstrapped")
    assert list(event) == ["severity", "event_type", "count", "schedules", "reason"]
    assert (event["severity"], event["count"], event["schedules"]) == ("notice", 2, 2)
    for f in (dotagent_home / "state" / "windows").glob("*.json"):
        assert json.loads(f.read_text())["settled"] == "bootstrap"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600

    # The scheduler's next decision is the next window of each: nothing runs, nothing missed.
    out = json.loads(dotagent("tick", "--json", env=env).stdout)
    assert (out["dispatched"], out["settled"]) == ([], [])
    assert _runs(dotagent_home) == [] and audit_events(dotagent_home, "window_missed") == []

    p = dotagent("bootstrap", env=env)  # twice: a no-op
    assert p.returncode == 0
    assert p.stdout == ("nothing to settle: every one of 2 schedule(s) is waiting for its "
                        "next window or already handled\n")
    assert len(audit_events(dotagent_home, "windows_bootstrapped")) == 1


def test_bootstrap_turns_a_missed_window_into_a_settled_one_and_leaves_runs_alone(
        dotagent_home: Path, env: dict[str, str]) -> None:
    write_agent(dotagent_home / "agents", "daily", _daily_three_hours_ago("daily"))
    _interval_agent(dotagent_home, "ran")
    first = json.loads(dotagent("tick", "--json", env=env).stdout)
    assert [s["action"] for s in first["settled"]] == ["missed"]  # too old when first seen
    assert [d["agent"] for d in first["dispatched"]] == ["ran"]
    out = json.loads(dotagent("bootstrap", "--json", env=env).stdout)
    assert [(s["agent"], s["was"]) for s in out["settled"]] == [("daily", "missed")]
    assert out["settled"][0]["window"] == first["settled"][0]["window"]
    [f] = (dotagent_home / "state" / "windows").glob("daily-*.json")
    data = json.loads(f.read_text())
    assert (data["settled"], data.get("missed", False)) == ("bootstrap", False)
