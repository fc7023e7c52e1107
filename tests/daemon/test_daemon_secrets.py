"""The daemon's secrets store: loaded at start, reloaded on SIGHUP (a failure drops the old
store), handed to `[env] secrets` agents, and never written anywhere under the home."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from daemon_kit import (
    DaemonProcess,
    audit_events,
    events_of,
    fake_op,
    gone,
    history_rows,
    wait_for,
    write_agent,
)

TOKEN = "tok-daemon-Xy7-unguessable"
OTHER = "other-daemon-secret-kept-back"
NEVER = 'type = "expression"\nexpression = "2099-01-01 00:00:00"'


@pytest.fixture
def secrets_file(tmp_path: Path, daemon_env: dict[str, str]) -> Path:
    vault = tmp_path / "vault"
    vault.mkdir()
    path = vault / "secrets.env"
    path.write_text(f"API_TOKEN={TOKEN}\nOTHER_SECRET=\"{OTHER}\"\n")
    path.chmod(0o600)
    daemon_env["DOTAGENT_SECRETS_FILE"] = str(path)
    return path


def scan(root: Path, *values: str) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                hits += [f"{path}: {v}" for v in values if v.encode() in data]
    return hits


def test_reload_drops_the_store_on_failure_and_when_the_file_vanishes(
        home: Path, daemon: DaemonProcess, secrets_file: Path) -> None:
    write_agent(home / "agents", "idle", schedule=NEVER, script="exit 0\n")
    daemon.start()
    loaded = wait_for(lambda: events_of(home, "secrets_loaded"), 10, "secrets_loaded")
    assert loaded[0]["path"] == str(secrets_file) and loaded[0]["key_count"] == 2
    assert loaded[0]["unresolved_references"] == 0
    secrets_file.write_text(f"API_TOKEN={TOKEN}\nnot a line\n")
    daemon.signal(signal.SIGHUP)
    refused = wait_for(lambda: events_of(home, "secrets_refused"), 10, "secrets_refused")
    assert refused[0]["reason"] == (f"invalid line 2 in {secrets_file}: no '=' (expected "
                                    "KEY=value); previous store dropped")
    assert refused[0]["severity"] == "critical"
    secrets_file.write_text(f"API_TOKEN={TOKEN}\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: len(events_of(home, "secrets_loaded")) == 2, 10, "the second load")
    assert events_of(home, "secrets_loaded")[1]["key_count"] == 1
    secrets_file.unlink()
    daemon.signal(signal.SIGHUP)
    gone = wait_for(lambda: events_of(home, "secrets_refused",
                                      reason="file no longer exists; previous store dropped"),
                    10, "the vanished file to be reported")
    assert gone[0]["path"] == str(secrets_file)
    assert daemon.stop() == 0
    assert TOKEN not in daemon.log()


def test_a_loose_file_is_refused_at_start_and_the_daemon_keeps_running(
        home: Path, daemon: DaemonProcess, secrets_file: Path) -> None:
    write_agent(home / "agents", "idle", schedule=NEVER, script="exit 0\n")
    secrets_file.chmod(0o644)
    daemon.start()
    refused = wait_for(lambda: events_of(home, "secrets_refused"), 10, "secrets_refused")
    assert refused[0]["reason"].startswith(f"insecure permissions on {secrets_file}: mode is "
                                           "0644")
    assert not refused[0]["reason"].endswith("dropped")  # nothing was loaded before
    assert "insecure permissions" in daemon.log()
    assert daemon.stop() == 0


def test_no_file_at_start_is_silent(home: Path, daemon: DaemonProcess,
                                    daemon_env: dict[str, str], tmp_path: Path) -> None:
    daemon_env["DOTAGENT_SECRETS_FILE"] = str(tmp_path / "nowhere.env")
    write_agent(home / "agents", "idle", schedule=NEVER, script="exit 0\n")
    daemon.start()
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: events_of(home, "config_reloaded"), 10, "the reload")
    assert not events_of(home, "secrets_loaded") and not events_of(home, "secrets_refused")
    assert daemon.stop() == 0


def test_daemon_runs_get_their_secret_and_nothing_under_the_home_keeps_it(
        home: Path, daemon: DaemonProcess, secrets_file: Path, tmp_path: Path) -> None:
    dump = tmp_path / "env.txt"
    script = (f'printf "stdout token=%s\\n" "$API_TOKEN"\n'
              f'printf "stderr token=%s\\n" "$API_TOKEN" >&2\n'
              f'/bin/sh -c "echo child got \\$1" child "$API_TOKEN"\n'
              f'env > "{dump}.tmp" && mv "{dump}.tmp" "{dump}"\n'
              "exit 3\n")
    write_agent(home / "agents", "leaky", script=script,
                schedule='type = "interval"\ninterval_minutes = 60',
                extra='[env]\nsecrets = ["API_TOKEN"]\n', retry="max_retries = 0")
    daemon.start()
    wait_for(lambda: events_of(home, "agent_given_up", agent="leaky"), 30,
             "the failed run to be given up")
    wait_for(lambda: any(r["finished_at"] is not None for r in history_rows(home, "leaky")),
             10, "the history row to be finished")
    env = dump.read_text()
    assert f"API_TOKEN={TOKEN}\n" in env and "OTHER_SECRET" not in env and OTHER not in env
    assert daemon.stop() == 0
    rows = history_rows(home, "leaky")
    assert rows[0]["stderr_tail"] == "stderr token=[REDACTED]"
    log = (home / "logs/agents/leaky/leaky.log").read_text()
    assert "stdout token=[REDACTED]" in log and "child got [REDACTED]" in log
    assert scan(home, TOKEN, OTHER) == []
    assert TOKEN not in daemon.log() and OTHER not in daemon.log()


def test_a_slow_op_on_sighup_does_not_hold_the_schedules(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str], tmp_path: Path) -> None:
    """`op` takes 4 s on the reload: the loop keeps dispatching meanwhile (runs of a 1 s
    schedule land in history), and `config_reloaded` comes once the store is in."""
    gate = tmp_path / "op-slow"
    fake_op(daemon_env, tmp_path, f"[ -e {gate} ] && sleep 4")
    write_agent(home / "agents", "ticker", schedule='type = "expression"\nexpression = "*:*:*"',
                script="exit 0\n")
    daemon.start()
    wait_for(lambda: events_of(home, "secrets_loaded"), 10, "the first load")
    wait_for(lambda: len(history_rows(home)) >= 1, 15, "a first run")
    gate.write_text("")
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("SIGHUP", 10)
    before = len(history_rows(home))
    # within the 4 s the reload takes, the every-second schedule still runs
    wait_for(lambda: len(history_rows(home)) >= before + 2 and
             not events_of(home, "config_reloaded"), 3.5, "runs while op is still reading")
    wait_for(lambda: events_of(home, "config_reloaded"), 15, "the reload to finish")
    assert len(events_of(home, "secrets_loaded")) == 2
    assert daemon.stop() == 0


def test_a_secret_in_the_arguments_never_reaches_supervisor_json(
        home: Path, daemon: DaemonProcess, secrets_file: Path) -> None:
    d = write_agent(home / "agents", "argy", script='sleep 3\nexit 0\n',
                    schedule='type = "interval"\ninterval_minutes = 60')
    manifest = (d / "agent.toml").read_text()
    (d / "agent.toml").write_text(manifest.replace(
        f'command = "{d / "run.sh"}"', f'command = "{d / "run.sh"}"\nargs = ["--key", "{TOKEN}"]'))
    daemon.start()
    snapshot = home / "state" / "supervisor.json"
    wait_for(lambda: snapshot.exists() and "argy" in snapshot.read_text(), 15,
             "the running agent in supervisor.json")
    text = snapshot.read_text()
    assert TOKEN not in text
    assert f'{d / "run.sh"} --key [REDACTED]' in text
    assert daemon.stop() == 0


def test_sighups_while_op_hangs_are_coalesced_and_sigterm_exits_at_once(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str], tmp_path: Path) -> None:
    """Ten SIGHUPs while `op` hangs queue one more load, not ten `op` calls of up to 10 s
    each; a SIGTERM then stops the hung `op` and exits within a few seconds, with nothing
    recorded after `daemon_stopped` and no error on stderr."""
    gate, calls = tmp_path / "op-hang", tmp_path / "op-calls"
    fake_op(daemon_env, tmp_path, f"echo $$ >> {calls}\n[ -e {gate} ] && exec sleep 60")
    write_agent(home / "agents", "idle", schedule=NEVER, script="exit 0\n")
    daemon.start()
    wait_for(lambda: events_of(home, "secrets_loaded"), 10, "the first load")
    gate.write_text("")
    for n in range(1, 11):  # one at a time: signals sent at once merge into one
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("SIGHUP", 10, count=n)
    wait_for(lambda: len(calls.read_text().split()) == 2, 10, "the reload's op call")
    hung = int(calls.read_text().split()[1])
    import time
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert time.monotonic() - began < 5
    wait_for(lambda: gone(hung), 5, "the hung op to be stopped")
    assert len(calls.read_text().split()) == 2  # the nine other SIGHUPs started no op
    kinds = [e["event_type"] for e in audit_events(home)]
    assert kinds[-1] == "daemon_stopped", kinds
    assert kinds.count("secrets_loaded") == 1
    assert "Exception in callback" not in daemon.log() and "Traceback" not in daemon.log()
    assert "error" not in daemon.log().split("daemon stopping")[1], daemon.log()
