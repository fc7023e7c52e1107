"""`[run] success_exit_codes` (systemd's SuccessExitStatus=) and `no_retry_exit_codes`
(RestartPreventExitStatus=): one success test for the window, the heartbeat, the history, the
events and the audit log; a status not to retry gives the window up at once."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dotagent.manifest import parse_manifest
from dotagent.paths import Home
from dotagent.schedule.windows import (
    ExitPolicy,
    IntervalRule,
    Policy,
    ScheduleState,
    WindowState,
    decide,
    health,
)
from dotagent.state.heartbeat import HeartbeatStore
from dotagent.state.history import History
from dotagent.state.windows import WindowStore

from helpers import dotagent, write_agent


# -- the pure parts ----------------------------------------------------------------------------
def test_an_ordinary_give_up_line_stays_upstream_shaped() -> None:
    from dotagent.audit import events

    plain = events.AgentGivenUp(agent="a", schedule="s", attempts=4, last_exit=1)
    assert list(plain.fields()) == ["event_type", "agent", "schedule", "attempts", "last_exit",
                                    "stderr_tail"]
    why = events.AgentGivenUp(agent="a", schedule="s", attempts=1, last_exit=4,
                              reason=events.no_retry_reason(4))
    assert why.fields()["reason"] == "exit 4 is in no_retry_exit_codes: not retried"


def test_the_one_success_test() -> None:
    exits = ExitPolicy(frozenset({3}), frozenset({4}))
    assert [exits.succeeded(c) for c in (0, 3, 4, 1, None)] == [True, True, False, False, False]
    assert [exits.retry_allowed(c) for c in (1, 4, None)] == [True, False, True]
    assert ExitPolicy().succeeded(0) and not ExitPolicy().succeeded(3)


T0 = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
POLICY = Policy(max_retries=3, retry_backoff_minutes=(5,), stale_after_minutes=120,
                exits=ExitPolicy(frozenset({3}), frozenset({4})))


def _after_one_attempt(code: int) -> ScheduleState:
    return ScheduleState(last_start=T0, window=WindowState(T0, attempts=1, last_attempt_at=T0,
                                                           last_exit_code=code))


def test_the_scheduler_reads_window_statuses_through_the_policy() -> None:
    rule, later = IntervalRule(60), T0 + timedelta(minutes=10)
    # 3 is a success: nothing to retry, healthy.
    assert decide(rule, _after_one_attempt(3), POLICY, later).action == "idle"
    assert health(rule, _after_one_attempt(3), POLICY, later).state == "ok"
    # 4 is not retried: given up at once (e.g. after the list was added to the manifest).
    d = decide(rule, _after_one_attempt(4), POLICY, later)
    assert (d.action, d.window, d.attempt) == ("give_up", T0, 1)
    h = health(rule, _after_one_attempt(4), POLICY, later)
    assert (h.state, h.reason) == ("failing", "gave up after 1 attempt(s): exit 4 is not "
                                              "retried (no_retry_exit_codes)")
    # Any other failure is retried after its backoff.
    assert decide(rule, _after_one_attempt(5), POLICY, later).action == "retry"
    # Without the policy, 3 is a failure as always.
    assert decide(rule, _after_one_attempt(3), replace(POLICY, exits=ExitPolicy()),
                  later).action == "retry"


BASE = """\
[agent]
name = "job"
[run]
command = "true"
{run}
[[schedules]]
id = "main"
type = "interval"
interval_minutes = 60
"""


def _errors(run: str) -> list[str]:
    text = BASE.format(run=textwrap.dedent(run).strip())
    return [str(e) for e in parse_manifest(text.encode(), Path("agents/job/agent.toml")).errors]


def test_the_manifest_gives_the_policy_its_exit_statuses() -> None:
    text = BASE.format(run="success_exit_codes = [3, 3, 75]\nno_retry_exit_codes = [4, 127]")
    r = parse_manifest(text.encode(), Path("agents/job/agent.toml"))
    assert r.ok, r.errors
    assert r.manifest is not None
    assert r.manifest.policy(r.manifest.schedules[0], salt=b"").exits == ExitPolicy(
        frozenset({3, 75}), frozenset({4, 127}))


@pytest.mark.parametrize(("run", "expected"), [
    ("success_exit_codes = [3]\nno_retry_exit_codes = [2, 3]",
     ["agents/job/agent.toml:6: run.no_retry_exit_codes[1]: 3 is also in "
      "run.success_exit_codes; a status is either a success or a failure not to retry, not "
      "both (remove it from one of run.success_exit_codes and run.no_retry_exit_codes)"]),
    ("no_retry_exit_codes = [0]",
     ["agents/job/agent.toml:5: run.no_retry_exit_codes[0]: 0 is always a success, so it "
      "cannot be a failure that is not retried (expected 1..255)"]),
    ("success_exit_codes = [256, -1]",
     ["agents/job/agent.toml:5: run.success_exit_codes[0]: 256 is out of range (0..255)",
      "agents/job/agent.toml:5: run.success_exit_codes[1]: -1 is out of range (0..255)"]),
    ("success_exit_codes = [124]",
     ["agents/job/agent.toml:5: run.success_exit_codes[0]: 124 is the status dotagent "
      "records for a timed-out run, which is never a success (list statuses your agent exits "
      "with; 124, 126 and 127 are reserved)"]),
    ('no_retry_exit_codes = ["4"]',
     ['agents/job/agent.toml:5: run.no_retry_exit_codes[0]: expected an integer, got a string '
      '("4")']),
])
def test_bad_exit_status_lists_are_located_errors(run: str, expected: list[str]) -> None:
    assert _errors(run) == expected


# -- real runs -------------------------------------------------------------------------------
def _agent(root: Path, code: int, run: str) -> None:
    write_agent(root, "job", f"""
        [agent]
        name = "job"
        [run]
        command = "sh"
        args = ["-c", "echo out; echo err >&2; exit {code}"]
        {run}
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
    """)


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    cli_env["DOTAGENT_ROOT"] = str(tmp_path / "agents")
    return cli_env


def _tick(env: dict[str, str]) -> dict[str, Any]:
    r = dotagent("tick", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _audit(home: Path, event_type: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (home / "audit.log").read_text().splitlines()]
    return [line for line in lines if line["event"]["event_type"] == event_type]


def _window(home: Path) -> WindowState:
    record = WindowStore(Home(home)).latest("job", "default")
    assert record is not None
    return record.state


def _rewind(home: Path, minutes: int) -> None:
    """Move the last attempt back so that its retry is due now (no sleeping)."""
    store = WindowStore(Home(home))
    record = store.latest("job", "default")
    assert record is not None and record.state.last_attempt_at is not None
    store.save("job", "default", "main", replace(
        record.state, last_attempt_at=record.state.last_attempt_at - timedelta(minutes=minutes)))


def test_a_listed_success_status_is_a_success_everywhere(tmp_path: Path, env: dict[str, str],
                                                         dotagent_home: Path) -> None:
    _agent(tmp_path / "agents", 3, "success_exit_codes = [3]")
    first = _tick(env)
    assert [(d["attempt"], d["result"]["exit_code"]) for d in first["dispatched"]] == [(1, 3)]
    window = _window(dotagent_home)
    assert (window.attempts, window.last_exit_code, window.given_up) == (1, 3, False)
    beat = HeartbeatStore(Home(dotagent_home)).read("job", "default")
    assert beat is not None and beat.exit_code == 3
    assert beat.last_success_at is not None and beat.last_success_at == beat.finished_at
    with History(Home(dotagent_home)) as history:
        assert [(r.exit_code, r.outcome) for r in history.query(agent="job")] == [(3, "ok")]
    runs = _audit(dotagent_home, "agent_run")
    assert [(r["severity"], r["event"]["exit_code"]) for r in runs] == [("notice", 3)]
    # Even with its retry instant long past, a succeeded window is not run again.
    _rewind(dotagent_home, 30)
    assert _tick(env)["dispatched"] == []
    # run-now says ok; the foreground `run` still exits with the agent's own status.
    r = dotagent("run-now", "job", env=env)
    assert r.returncode == 0 and r.stdout.startswith("✓ job/main  ok"), r.stdout
    r = dotagent("run", "job", env=env)
    assert r.returncode == 3, r.stderr
    beat = HeartbeatStore(Home(dotagent_home)).read("job", "default")
    assert beat is not None and beat.last_success_at == beat.finished_at


def test_an_unlisted_status_is_still_a_failure(tmp_path: Path, env: dict[str, str],
                                               dotagent_home: Path) -> None:
    _agent(tmp_path / "agents", 3, "success_exit_codes = [2]")
    _tick(env)
    beat = HeartbeatStore(Home(dotagent_home)).read("job", "default")
    assert beat is not None and beat.last_success_at is None
    with History(Home(dotagent_home)) as history:
        assert [r.outcome for r in history.query(agent="job")] == ["failed"]
    assert [r["severity"] for r in _audit(dotagent_home, "agent_run")] == ["critical"]
    r = dotagent("run-now", "job", env=env)
    assert r.stdout.startswith("✗ job/main  failed (exit 3)"), r.stdout


def test_a_status_not_to_retry_gives_the_window_up_after_one_attempt(
        tmp_path: Path, env: dict[str, str], dotagent_home: Path) -> None:
    _agent(tmp_path / "agents", 4, "no_retry_exit_codes = [4]")
    first = _tick(env)
    assert [d["result"]["exit_code"] for d in first["dispatched"]] == [4]
    window = _window(dotagent_home)
    assert (window.attempts, window.last_exit_code, window.given_up) == (1, 4, True)
    given_up = _audit(dotagent_home, "agent_given_up")
    assert [(g["event"]["attempts"], g["event"]["last_exit"], g["event"]["reason"])
            for g in given_up] == [(1, 4, "exit 4 is in no_retry_exit_codes: not retried")]
    # The second tick, with the retry instant past: nothing runs, nothing is recorded again.
    _rewind(dotagent_home, 30)
    second = _tick(env)
    assert (second["dispatched"], second["settled"]) == ([], [])
    assert len(_audit(dotagent_home, "agent_given_up")) == 1
    with History(Home(dotagent_home)) as history:
        assert [r.outcome for r in history.query(agent="job")] == ["failed"]


def test_other_failures_are_retried_as_before(tmp_path: Path, env: dict[str, str],
                                              dotagent_home: Path) -> None:
    _agent(tmp_path / "agents", 5, "no_retry_exit_codes = [4]")
    _tick(env)
    window = _window(dotagent_home)
    assert (window.attempts, window.given_up) == (1, False)
    _rewind(dotagent_home, 30)
    second = _tick(env)
    assert [(d["attempt"], d["result"]["exit_code"]) for d in second["dispatched"]] == [(2, 5)]
    assert _audit(dotagent_home, "agent_given_up") == []


def test_a_pending_retry_follows_a_new_no_retry_list(tmp_path: Path, env: dict[str, str],
                                                     dotagent_home: Path) -> None:
    _agent(tmp_path / "agents", 4, "")
    _tick(env)
    assert _window(dotagent_home).given_up is False
    _agent(tmp_path / "agents", 4, "no_retry_exit_codes = [4]")
    _rewind(dotagent_home, 30)
    second = _tick(env)
    assert second["dispatched"] == []
    assert [s["action"] for s in second["settled"]] == ["give_up"]
    assert _window(dotagent_home).given_up is True
    assert [g["event"]["reason"] for g in _audit(dotagent_home, "agent_given_up")] == [
        "exit 4 is in no_retry_exit_codes: not retried"]


def test_doctor_reports_a_bad_list_with_file_line_and_field(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    _agent(tmp_path / "agents", 0, "success_exit_codes = [4]\nno_retry_exit_codes = [4]")
    r = dotagent("doctor", env=env)
    assert r.returncode != 0
    assert "agent.toml:7: run.no_retry_exit_codes[0]: 4 is also in run.success_exit_codes" \
        in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
