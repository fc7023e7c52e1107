"""Starting the daemon: what it refuses (config.toml errors, a changed installation), what it
searches (never the current directory) and what its agents get on stdin."""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon_kit import DaemonFactory, DaemonProcess, events_of, wait_for, write_agent

AT_ONCE = """
    type = "interval"
    interval_minutes = 60
    """


def test_invalid_config_exits_78_with_located_errors(home: Path,
                                                     daemon: DaemonProcess) -> None:
    config = home / "config.toml"
    config.write_text('[daemon]\nmax_concurrent_runs = "ten"\n\n[power]\n'
                      'min_battery_percent = 101\n')
    assert daemon.spawn().wait() == 78  # EX_CONFIG: a unit's RestartPreventExitStatus
    text = daemon.log()
    assert f"{config}:2: daemon.max_concurrent_runs: expected an integer" in text
    assert f"{config}:5: power.min_battery_percent: 101 is out of range (0..100)" in text
    assert "Traceback" not in text
    assert not events_of(home, "daemon_started")
    assert not (home / "state" / "daemon.pid").exists()


def test_config_syntax_error_exits_78(home: Path, daemon: DaemonProcess) -> None:
    config = home / "config.toml"
    config.write_text("[daemon]\nshutdown_grace_seconds = \n")
    assert daemon.spawn().wait() == 78
    assert f"{config}:2: TOML syntax error" in daemon.log()


def test_self_hash_mismatch_refuses_to_start(home: Path, daemon: DaemonProcess) -> None:
    (home / "daemon.sha256").write_text("0" * 64)  # not what is installed
    assert daemon.spawn().wait() == 77  # EX_NOPERM: the unit does not restart into it
    text = daemon.log()
    assert "the installed dotagent differs from the one recorded in " \
           f"{home / 'daemon.sha256'}" in text
    assert "`dotagent selfcheck --record`" in text and "Traceback" not in text
    failed = events_of(home, "selfcheck_failed")
    assert len(failed) == 1 and failed[0]["expected_sha256"] == "0" * 64
    assert not events_of(home, "daemon_started")
    assert not (home / "state" / "daemon.pid").exists()


def test_first_start_records_the_self_hash(home: Path, daemon: DaemonProcess) -> None:
    daemon.start()
    assert (home / "daemon.sha256").exists()
    assert events_of(home, "selfcheck_recorded")
    assert daemon.stop() == 0


def test_agents_get_dev_null_and_the_current_directory_is_never_searched(
        home: Path, daemons: DaemonFactory, tmp_path: Path) -> None:
    work = tmp_path / "work"  # where the user happens to start the daemon from
    write_agent(work / "agents", "intruder", schedule=AT_ONCE,
                script='touch "$AGENT_HOME/ran"\n')
    # ./agent.toml: an agent directory of its own, which `run` and `doctor` would see
    write_agent(tmp_path, "work", schedule=AT_ONCE, script='touch "$AGENT_HOME/ran"\n')
    d = write_agent(home / "agents", "home-agent", schedule=AT_ONCE, script="""
        readlink /proc/self/fd/0 > "$AGENT_HOME/stdin.tmp"
        mv "$AGENT_HOME/stdin.tmp" "$AGENT_HOME/stdin"
        """)
    daemon = daemons(cwd=work).start()
    wait_for(lambda: (d / "stdin").exists(), 20, "the home agent's run")
    assert daemon.stop() == 0

    assert (d / "stdin").read_text().strip() == os.devnull  # the daemon's own stdin is a pipe
    assert not (work / "agents" / "intruder" / "ran").exists()
    assert not (work / "ran").exists()
    assert "scanned 1 agent(s), 1 schedule(s)" in daemon.log()
    known = json.loads((home / "state" / "known_manifests.json").read_text())
    assert sorted(known["entries"]) == ["home-agent"]
    for name in ("intruder", "work"):
        assert not events_of(home, "phantom_agent_detected", agent=name)
        assert not events_of(home, "manifest_loaded", agent=name)


def test_sigterm_and_sighup_during_start_up_stop_it_cleanly(
        home: Path, daemons: DaemonFactory, daemon_env: dict[str, str], tmp_path: Path) -> None:
    """While the start-up secrets load waits on a slow `op`, a SIGHUP changes nothing and a
    SIGTERM is kept: the load finishes, nothing runs, `daemon_stopped` is recorded, exit 0."""
    import signal

    from daemon_kit import fake_op, history_rows

    started = tmp_path / "op-started"
    fake_op(daemon_env, tmp_path, f": > {started}\nsleep 2")
    write_agent(home / "agents", "due", schedule='type = "interval"\ninterval_minutes = 60',
                script="exit 0\n")
    daemon = daemons().spawn()
    wait_for(started.exists, 15, "op to be asked during start-up")
    daemon.signal(signal.SIGHUP)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    [stopped] = events_of(home, "daemon_stopped")
    assert stopped["reason"] == "SIGTERM"
    assert events_of(home, "secrets_loaded")  # the step it was in was finished
    assert history_rows(home) == []  # and nothing was started after it
    assert not (home / "state" / "daemon.pid").exists()
