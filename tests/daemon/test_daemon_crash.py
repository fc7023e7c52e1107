"""A daemon killed with SIGKILL mid-run: the next one reaps the orphaned process group, records
the run as interrupted, keeps the audit chain intact, and counts the interrupted attempt
instead of firing the window again as new."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

from daemon_kit import (
    DaemonFactory,
    DaemonProcess,
    dotagent,
    events_of,
    gone,
    history_rows,
    wait_for,
    write_agent,
)

from dotagent.clock import from_epoch, utc_now
from dotagent.daemon.tick import load_entries
from dotagent.discovery import discover
from dotagent.localzone import local_zone
from dotagent.paths import Home
from dotagent.state.windows import WindowStore

LONG_RUNNER = """
    sleep 300 &
    echo $! > "$AGENT_HOME/grandchild.pid"
    echo $$ > "$AGENT_HOME/agent.pid"
    wait
    """


def _start_long_run(home: Path, daemon: DaemonProcess) -> tuple[Path, int, int]:
    d = write_agent(home / "agents", "long", schedule="""
        type = "interval"
        interval_minutes = 60
        """, script=LONG_RUNNER)
    daemon.start()
    wait_for(lambda: (d / "agent.pid").exists() and (d / "grandchild.pid").exists(), 20,
             "the agent and its grandchild to start")
    agent_pid = int((d / "agent.pid").read_text())
    snapshot = home / "state" / "supervisor.json"

    def recorded() -> bool:
        try:
            return [p["pid"] for p in json.loads(snapshot.read_text())] == [agent_pid]
        except (OSError, ValueError):
            return False

    wait_for(recorded, 10, "the agent in supervisor.json")
    return d, agent_pid, int((d / "grandchild.pid").read_text())


def test_kill_9_then_restart_reaps_and_accounts(home: Path, daemons: DaemonFactory,
                                               daemon_env: dict[str, str]) -> None:
    first = daemons()
    d, agent_pid, grandchild = _start_long_run(home, first)
    first.signal(signal.SIGKILL)
    first.wait()
    assert not gone(agent_pid) and not gone(grandchild), "the orphans are still running"

    second = daemons().start()
    wait_for(lambda: gone(agent_pid) and gone(grandchild), 20,
             "the orphaned group to be reaped")
    reaped = wait_for(lambda: events_of(home, "orphan_reaped", agent="long"), 10,
                      "orphan_reaped")
    assert len(reaped) == 1
    assert reaped[0]["severity"] == "critical" and reaped[0]["pid"] == agent_pid
    interrupted = events_of(home, "run_interrupted", agent="long")
    assert len(interrupted) == 1 and "started" in interrupted[0]["reason"]
    assert second.stop() == 0  # every step the new daemon took is finished now

    # The window was not fired again as new: still one attempt in the history, and the new
    # daemon dispatched nothing.
    rows = history_rows(home, "long")
    assert [(r["outcome"], r["attempt"]) for r in rows] == [("interrupted", 1)]
    assert "dispatching" not in second.log()
    verify = dotagent("audit", "verify", env=daemon_env)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The interrupted attempt counts: the window's next attempt is number 2, at its backoff
    # (the first of [5, 15, 30] minutes after the interrupted start).
    h = Home(home)
    windows = WindowStore(h, zone=local_zone())
    record = windows.latest("long", "default")
    assert record is not None
    window = record.state
    assert (window.attempts, window.last_exit_code, window.given_up) == (1, -1, False)
    assert window.expected_at == from_epoch(rows[0]["window_at"])
    (entry,) = load_entries(discover(daemon_env, include_cwd=False), h, local_zone(),
                            windows=windows)
    now = utc_now()
    waiting = entry.decide(now)
    assert waiting.action == "wait" and waiting.window == window.expected_at
    assert window.last_attempt_at is not None
    retry_at = window.last_attempt_at + timedelta(minutes=5)
    assert waiting.wake_at == retry_at
    due = entry.decide(retry_at)
    assert (due.action, due.window, due.attempt) == ("retry", window.expected_at, 2)
    assert d.exists()
