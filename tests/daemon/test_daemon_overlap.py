"""One run per agent (V7, S14.4): windows that come due while the agent still runs are skipped
and audited once per episode, never queued; `run-now` and `run` are refused meanwhile."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from daemon_kit import (
    DOTAGENT,
    DaemonProcess,
    audit_events,
    dotagent,
    events_of,
    history_rows,
    wait_for,
    write_agent,
)

# The agent holds an flock on a file in its own directory while it runs; a second instance
# that finds it held leaves a mark. It runs ~1.5 s; a window comes every second.
SLOW = """
    exec 9>>"$AGENT_HOME/instance.lock"
    if ! flock -n 9; then
        echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/OVERLAP"
        exit 1
    fi
    echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/starts"
    sleep 1.5
    exit "$(cat "$AGENT_HOME/status")"
    """
RUNS = 3


@pytest.mark.parametrize("status", [0, 1], ids=["succeeding", "failing"])
def test_overlapping_windows_are_skipped_once_per_episode(home: Path, daemon: DaemonProcess,
                                                          status: int) -> None:
    d = write_agent(home / "agents", "slow", schedule="""
        type = "expression"
        expression = "*:*:0/1"
        """, script=SLOW)
    (d / "status").write_text(str(status))
    daemon.start()

    def finished() -> bool:
        return sum(r["outcome"] != "running" for r in history_rows(home, "slow")) >= RUNS

    wait_for(finished, 30, f"{RUNS} finished runs")
    assert daemon.stop() == 0

    assert not (d / "OVERLAP").exists(), "two instances of the agent ran at once"
    rows = history_rows(home, "slow")
    for a, b in itertools.pairwise(rows):
        assert a["finished_at"] is not None and b["started_at"] >= a["finished_at"]
    # Between two runs: exactly one run_skipped_overlap, for the windows that fell inside
    # the first (each run spans at least one window boundary).
    sequence = [e for e in (e["event_type"] for e in _agent_events(home, "slow"))
                if e in ("agent_run", "run_skipped_overlap")]
    completed = [r for r in rows if r["outcome"] == ("ok" if status == 0 else "failed")]
    assert len(completed) >= RUNS
    pairs = sequence[:2 * (RUNS - 1)]
    assert pairs == ["agent_run", "run_skipped_overlap"] * (RUNS - 1), sequence
    for event in events_of(home, "run_skipped_overlap", agent="slow"):
        assert "window(s) came due while the agent was still running" in event["reason"]
        assert "skipped, not queued" in event["reason"]
    # Skipped windows are never run later: every run is of a new window, after the last.
    windows = [r["window_at"] for r in rows]
    assert windows == sorted(set(windows))
    assert all(r["attempt"] == 1 for r in rows)


def _agent_events(home: Path, agent: str) -> list[dict[str, object]]:
    return [e for e in audit_events(home) if e.get("agent") == agent]


def test_run_now_and_run_are_refused_while_the_daemon_runs_it(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str]) -> None:
    d = write_agent(home / "agents", "busy", schedule="""
        type = "interval"
        interval_minutes = 60
        """, script='touch "$AGENT_HOME/started"\nsleep 300\n')
    daemon.start()
    wait_for(lambda: (d / "started").exists(), 20, "the daemon's run to start")

    now = dotagent("run-now", "busy", env=daemon_env)
    assert now.returncode == 1, now.stdout + now.stderr
    assert f"agent 'busy' is already running (pid {daemon.pid})" in now.stderr
    assert "one run per agent at a time" in now.stderr and "Traceback" not in now.stderr

    fg = dotagent("run", "busy", env=daemon_env)
    assert fg.returncode == 75, fg.stdout + fg.stderr  # EX_TEMPFAIL: try again later
    assert "is already running" in fg.stderr and "Traceback" not in fg.stderr

    # Neither started a second instance, nor disturbed the daemon's run.
    assert [r["source"] for r in history_rows(home, "busy")] == ["daemon"]
    assert history_rows(home, "busy")[0]["outcome"] == "running"
    assert daemon.stop() == 0


def test_daemon_waits_while_run_now_holds_the_agent(home: Path, daemon: DaemonProcess,
                                                    daemon_env: dict[str, str]) -> None:
    """The window is due but `run-now` is running the agent: the daemon's attempt is refused
    by the agent lock, and it leaves the window alone for a while instead of retrying in a
    tight loop."""
    d = write_agent(home / "agents", "shared", schedule="""
        type = "expression"
        expression = "hourly"
        """, script='touch "$AGENT_HOME/started"\nsleep 2\n')
    manual = subprocess.Popen([DOTAGENT, "run-now", "shared"], env=daemon_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (d / "started").exists(), 20, "run-now to start the agent")
        daemon.start()
        daemon.wait_log("skipped shared/main: agent 'shared' is already running", 20)
        out, err = manual.communicate(timeout=30)
        assert manual.returncode == 0, out + err
    finally:
        if manual.poll() is None:
            manual.kill()
            manual.wait()
    log = daemon.log()
    assert log.count("dispatching shared/main") == 1, log
    assert daemon.stop() == 0
    assert [r["source"] for r in history_rows(home, "shared")] == ["run-now"]
