"""`dotagent audit show`, and the command wiring through the real application."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dotagent.audit import AuditLog, events
from dotagent.cli.app import run_app
from dotagent.cli.audit import group
from dotagent.paths import Home


@pytest.fixture
def populated() -> AuditLog:
    log = AuditLog(Home.from_env())
    old = datetime.now() - timedelta(days=3)
    log.append(events.DaemonStarted(version="0.1.0", pid=7), now=old)
    log.append(events.AgentRun(agent="inbox", schedule="am", slug="default", exit_code=0,
                               duration_seconds=2, timed_out=False), now=old)
    log.append(events.AgentRun(agent="inbox", schedule="pm", slug="default", exit_code=3,
                               duration_seconds=5, timed_out=False))
    log.append(events.PluginInvoked(agent="backup", plugin="notifier:slack",
                                    plugin_kind="notify", ok=True))
    log.append(events.AgentGivenUp(agent="backup", schedule="nightly", attempts=4,
                                   last_exit=1, stderr_tail="disk full\nretry later"))
    return log


def show(*args: str) -> list[str]:
    result = CliRunner().invoke(group, ["show", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_show_all_human(populated: AuditLog) -> None:
    out = show()
    assert len(out) == 5
    assert "daemon_started" in out[0] and "version=0.1.0 pid=7" in out[0]
    assert "critical" in out[2] and "exit_code=3" in out[2]
    assert 'stderr_tail="disk full\\nretry later"' in out[4]


def test_show_filters(populated: AuditLog) -> None:
    assert len(show("--agent", "inbox")) == 2
    assert len(show("--severity", "critical")) == 2
    assert len(show("--severity", "notice")) == 3
    assert len(show("--since", "2h")) == 3
    since = (datetime.now() - timedelta(days=1)).astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    assert len(show("--since", since)) == 3
    assert len(show("--event", "agent_run", "--agent", "inbox", "--severity", "critical")) == 1
    last = show("-n", "2")
    assert "plugin_invoked" in last[0] and "agent_given_up" in last[1]


def test_show_json_prints_stored_lines(populated: AuditLog) -> None:
    stored = (Home.from_env().audit_log).read_text().splitlines()
    assert show("--json") == stored
    assert show("--json", "-n", "1") == stored[-1:]
    assert json.loads(show("--json", "--agent", "backup", "-n", "1")[0])["event"]["attempts"] == 4


def test_show_without_log_prints_nothing() -> None:
    assert show() == []


def test_bad_since_is_a_usage_error(populated: AuditLog,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["audit", "show", "--since", "last tuesday"]) == 2
    assert "Invalid value for '--since': 'last tuesday' is neither" in capsys.readouterr().err


@pytest.mark.parametrize("since", ["99999999w", "99999999999999999999d", "0001-01-01",
                                   "9999-12-31T23:59:59-1400"])
def test_out_of_range_since_is_a_usage_error(populated: AuditLog, since: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["audit", "show", "--since", since]) == 2
    assert f"'{since}' is out of range" in capsys.readouterr().err
    result = CliRunner().invoke(group, ["show", "--since", since])
    assert result.exit_code == 2 and not isinstance(result.exception, OverflowError)


ODD_LINES = [
    b'{"ts":"x","severity":"info","event":"notadict","prev_hash":"y"}',
    b"[1,2]",
    b'{"ts":5,"severity":["a"],"event":{"event_type":null,"agent":"inbox"},"prev_hash":"z"}',
    b"\xff\xfe not json",
]


@pytest.mark.parametrize("args", [[], ["--json"], ["--agent", "inbox"],
                                  ["--severity", "critical"], ["--event", "agent_run"],
                                  ["--since", "1d"], ["-n", "3"]])
def test_show_prints_odd_lines_as_unreadable(populated: AuditLog, args: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = Home.from_env().audit_log
    with open(path, "ab") as fh:
        fh.write(b"".join(line + b"\n" for line in ODD_LINES))
    assert run_app(["audit", "show", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    odd = out[-len(ODD_LINES):] if "-n" not in args else out
    if "--json" in args:
        assert odd == [line.decode("utf-8", "replace") for line in ODD_LINES]
    elif "-n" in args:
        assert [x.split(":")[0] for x in odd] == [f"?  unreadable line {n}" for n in (7, 8, 9)]
    else:
        assert [x.split(":")[0] for x in odd] == [f"?  unreadable line {n}"
                                                  for n in (6, 7, 8, 9)]
        assert "'[1,2]'" in odd[1]


def test_verify_through_the_app(populated: AuditLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["audit", "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    home = Home.from_env()
    assert report == {"status": "intact_from_genesis", "ok": True, "scope": "current_segment",
                      "file": str(home.audit_log), "segments": [], "walked": [],
                      "unreached": [], "lines": 5, "live_lines": 5, "head": report["head"],
                      "problems": [], "warnings": [], "recorded": 0, "appended": 0,
                      "breaks": [], "unacknowledged": 0}
    assert report["head"]["count"] == 5


def test_deleted_log_is_truncation(populated: AuditLog) -> None:
    Home.from_env().audit_log.unlink()
    result = CliRunner().invoke(group, ["verify"])
    assert result.exit_code == 1
    assert "truncation" in result.output
    # Recorded once, the chain restarts from the record; verify fails until acknowledged.
    again = AuditLog(Home.from_env()).verify()
    assert again.problems == [] and [b.kind for b in again.unacknowledged] == ["truncation"]


def test_real_executable(populated: AuditLog, cli_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(["dotagent", "audit", "verify"], env=cli_env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and "intact: 5 entries" in done.stdout
    shown = subprocess.run(["dotagent", "audit", "show", "-n", "1"], env=cli_env,
                           capture_output=True, text=True, check=False)
    assert "agent_given_up" in shown.stdout and "\x1b[" not in shown.stdout
