"""Signals: SIGHUP and `dotagent reload` re-read the manifests; SIGTERM stops the running agents
(their whole process groups) and records them; one daemon per home."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
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

NEVER = """
    type = "expression"
    expression = "2099-01-01 00:00:00"
    """
AT_ONCE = """
    type = "interval"
    interval_minutes = 60
    """  # never started: due when first seen (S14.21)
LONG_RUNNER = """
    sleep 300 &
    echo $! > "$AGENT_HOME/grandchild.pid"
    echo $$ > "$AGENT_HOME/agent.pid"
    wait
    """


def _hidden_agent(home: Path, outside: Path, name: str) -> Path:
    """An agent directory that inotify cannot report: `agents/<name>` is a symlink to a
    directory that does not exist yet. Returns where to create the agent later."""
    target = outside / name
    (home / "agents" / name).symlink_to(target, target_is_directory=True)
    return target


def _reveal(target: Path) -> None:
    write_agent(target.parent, target.name, schedule=AT_ONCE,
                script='echo ran > "$AGENT_HOME/ran"\n')


def test_sighup_picks_up_a_new_agent(home: Path, daemon: DaemonProcess,
                                     tmp_path: Path) -> None:
    write_agent(home / "agents", "first", schedule=NEVER, script="exit 0\n")
    target = _hidden_agent(home, tmp_path, "late")
    daemon.start()
    _reveal(target)  # no inotify event reaches the daemon: it watches only agents/
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: (target / "ran").exists(), 20, "the new agent to run after SIGHUP")
    assert events_of(home, "config_reloaded", reason="SIGHUP")
    assert events_of(home, "phantom_agent_detected", agent="late")
    # From now on its directory is watched too: an edit is seen within a second.
    manifest = target / "agent.toml"
    edited = target / ".agent.toml.new"
    edited.write_text(manifest.read_text().replace("timeout_seconds = 30",
                                                   "timeout_seconds = 31"))
    edited.replace(manifest)
    wait_for(lambda: events_of(home, "manifest_drift_detected", agent="late"), 1.5,
             "the edit of the newly found agent to be seen")
    assert daemon.stop() == 0


def test_reload_command_signals_the_daemon(home: Path, daemon: DaemonProcess,
                                           daemon_env: dict[str, str], tmp_path: Path) -> None:
    write_agent(home / "agents", "first", schedule=NEVER, script="exit 0\n")
    target = _hidden_agent(home, tmp_path, "late")
    daemon.start()
    _reveal(target)
    done = dotagent("reload", env=daemon_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sent SIGHUP to dotagent daemon (pid={daemon.pid})"
    wait_for(lambda: (target / "ran").exists(), 20, "the new agent to run after reload")
    assert events_of(home, "config_reloaded", reason="SIGHUP")
    assert daemon.stop() == 0


def test_reload_without_a_daemon(home: Path, daemon_env: dict[str, str]) -> None:
    done = dotagent("reload", env=daemon_env)
    assert done.returncode == 1
    assert f"no dotagent daemon is running for {home}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_reload_never_signals_a_stale_pid(home: Path, daemon: DaemonProcess,
                                          daemon_env: dict[str, str]) -> None:
    # A daemon that was killed leaves daemon.pid (and its unheld lock) behind; the pid may
    # since belong to somebody else — here, a `sleep` that SIGHUP would kill.
    daemon.start()
    daemon.signal(signal.SIGKILL)
    daemon.wait()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (home / "state" / "daemon.pid").write_text(str(stranger.pid))
        done = dotagent("reload", env=daemon_env)
        assert done.returncode == 1
        assert "no dotagent daemon is running" in done.stderr
        assert stranger.poll() is None, "reload signalled a pid no daemon holds"
    finally:
        stranger.kill()
        stranger.wait()


def test_second_daemon_is_refused(home: Path, daemons: DaemonFactory) -> None:
    first = daemons().start()
    second = daemons().spawn()
    assert second.wait() == 1
    text = second.log()
    assert f"a dotagent daemon is already running for {home} (pid {first.pid})" in text
    assert "Traceback" not in text
    assert first.alive()
    assert (home / "state" / "daemon.pid").read_text() == str(first.pid)
    assert first.stop() == 0


@pytest.mark.parametrize("trap", ["", "trap '' TERM\n"], ids=["term", "term-ignored"])
def test_sigterm_stops_the_whole_group_and_records_it(home: Path, daemon: DaemonProcess,
                                                      trap: str) -> None:
    """TERM to every supervised group; a group that ignores it (here the agent and its
    grandchild both do) gets KILL after `shutdown_grace_seconds` (1 s in these tests)."""
    d = write_agent(home / "agents", "long", schedule=AT_ONCE, script=trap + LONG_RUNNER)
    daemon.start()
    wait_for(lambda: (d / "agent.pid").exists() and (d / "grandchild.pid").exists(), 20,
             "the agent and its grandchild to start")
    agent_pid = int((d / "agent.pid").read_text())
    grandchild = int((d / "grandchild.pid").read_text())
    snapshot = home / "state" / "supervisor.json"
    wait_for(lambda: snapshot.exists(), 10, "supervisor.json")
    assert [p["pid"] for p in json.loads(snapshot.read_text())] == [agent_pid]

    assert daemon.stop() == 0
    wait_for(lambda: gone(agent_pid) and gone(grandchild), 10,
             "the agent and its grandchild to be gone")
    interrupted = events_of(home, "run_interrupted", agent="long")
    assert len(interrupted) == 1 and "SIGTERM" in interrupted[0]["reason"]
    runs = events_of(home, "agent_run", agent="long")
    killed_by = signal.SIGKILL if trap else signal.SIGTERM
    assert len(runs) == 1 and runs[0]["exit_code"] == 128 + killed_by
    stopped = events_of(home, "daemon_stopped")
    assert len(stopped) == 1 and stopped[0]["reason"] == "SIGTERM"
    assert not (home / "state" / "daemon.pid").exists()
    assert not snapshot.exists()
    assert [r["outcome"] for r in history_rows(home, "long")] == ["interrupted"]


def test_supervisor_json_is_kept_current_while_a_run_lasts(home: Path,
                                                           daemon: DaemonProcess) -> None:
    """Rewritten every 2 s while something runs (its ages stay current), deleted when the
    run ends, and not written again while the daemon is idle."""
    d = write_agent(home / "agents", "three", schedule=AT_ONCE,
                    script='echo $$ > "$AGENT_HOME/agent.pid"\nsleep 4\n')
    daemon.start()
    snapshot = home / "state" / "supervisor.json"

    def aged() -> bool:
        try:
            (record,) = json.loads(snapshot.read_text())
        except (OSError, ValueError):
            return False
        # Written at the spawn with age 0; the rewrite ~2 s later shows it older.
        return bool(record["age_seconds"] >= 1 and record["deadline_pct"] > 0)

    wait_for(aged, 15, "supervisor.json to show the run's age")
    assert json.loads(snapshot.read_text())[0]["pid"] == int((d / "agent.pid").read_text())
    wait_for(lambda: history_rows(home, "three")
             and history_rows(home, "three")[0]["outcome"] == "ok", 15, "the run to end")
    wait_for(lambda: not snapshot.exists(), 5, "supervisor.json to be deleted")
    ended = time.monotonic()
    wait_for(lambda: time.monotonic() > ended + 2.5, 5, "a snapshot period to pass")
    assert not snapshot.exists(), "supervisor.json was written while idle"
    assert daemon.stop() == 0
