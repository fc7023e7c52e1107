"""`dotagent status` against a real daemon: it says the daemon runs (pid, since when) and
lists the run going on with its age against its deadline; after the daemon stops, it says so
and answers from the state it left."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from daemon_kit import DaemonProcess, dotagent, wait_for, write_agent


def _status(env: dict[str, str]) -> dict:
    p = dotagent("status", "--json", env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_status_sees_the_daemon_and_its_live_run(home: Path, daemon: DaemonProcess,
                                                  daemon_env: dict[str, str]) -> None:
    write_agent(home / "agents", "slow", timeout=600, schedule="""
        type = "interval"
        interval_minutes = 60
        """, script='touch "$AGENT_HOME/started"\nexec sleep 120\n')
    before = _status(daemon_env)
    assert before["daemon"] == {"running": False, "pid": None, "since": None}
    started = time.time()
    daemon.start()
    wait_for(lambda: (home / "agents" / "slow" / "started").exists(), 30, "the agent to start")
    wait_for(lambda: (home / "state" / "supervisor.json").exists(), 30, "supervisor.json")
    data = _status(daemon_env)
    assert data["daemon"]["running"] is True
    assert data["daemon"]["pid"] == daemon.pid
    since = datetime.fromisoformat(data["daemon"]["since"])
    assert started - 1 <= since.timestamp() <= time.time()
    (live,) = [r for r in data["running"] if r["kind"] == "agent"]
    assert list(live) == ["agent", "schedule", "kind", "pid", "label", "started_at",
                          "age_seconds", "deadline_seconds", "deadline_pct"]
    assert (live["agent"], live["schedule"], live["deadline_seconds"]) == ("slow", "main", 600)
    assert 0 <= live["age_seconds"] < 60 and live["deadline_pct"] < 10
    plain = dotagent("status", env=dict(daemon_env, NO_COLOR="1"))
    assert f"daemon: running (pid {daemon.pid}, since " in plain.stdout
    assert "Running now:" in plain.stdout and "of 600s deadline" in plain.stdout
    assert daemon.stop() == 0
    after = _status(daemon_env)
    assert after["daemon"] == {"running": False, "pid": None, "since": None}
    assert after["running"] == []
    (row,) = after["schedules"]
    assert row["agent"] == "slow" and row["last_outcome"] == "interrupted"


def test_a_run_in_progress_is_not_degraded_and_an_overlapped_window_is_named(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str]) -> None:
    """An every-2 s schedule whose run lasts longer: while it runs, status says it runs (state
    ok), and names the window that came due meanwhile as skipped for the overlap."""
    write_agent(home / "agents", "busy", timeout=600, schedule="""
        type = "expression"
        expression = "*:*:0/2"
        """, script='touch "$AGENT_HOME/started"\nexec sleep 60\n')
    daemon.start()
    wait_for(lambda: (home / "agents" / "busy" / "started").exists(), 30, "the run to start")
    wait_for(lambda: (home / "state" / "supervisor.json").exists(), 30, "supervisor.json")

    def overlapped() -> dict | None:
        (row,) = _status(daemon_env)["schedules"]
        return row if "skipped (overlap)" in row["reason"] else None

    row = wait_for(overlapped, 15, "a window to come due during the run")
    assert row["state"] == "ok"
    assert row["reason"].startswith("running since ")
    assert daemon.stop() == 0
