"""Alerts from a real daemon: the daily summary goes out once at its time (and a restart in
its grace window does not send it again), and a daemon-wide notifier hears of a phantom
agent. Delivery is through a fake `notify-send` on PATH that records its arguments."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon_kit import DaemonFactory, DaemonProcess, events_of, wait_for, write_agent

NEVER = """
    type = "expression"
    expression = "2099-01-01 00:00:00"
    """


def _fake_notify_send(bin_dir: Path, record: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "notify-send"
    exe.write_text(f"#!{sys.executable}\nimport json, sys\n"
                   f"with open({str(record)!r}, 'a') as f:\n"
                   "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    exe.chmod(0o755)


def _calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def _with_notify_send(daemon_env: dict[str, str], tmp_path: Path) -> Path:
    record = tmp_path / "notify-send.jsonl"
    _fake_notify_send(tmp_path / "bin", record)
    daemon_env["PATH"] = f"{tmp_path / 'bin'}:{daemon_env['PATH']}"
    daemon_env["TZ"] = "UTC"
    return record


def test_daily_summary_sent_once_at_its_time(home: Path, daemons: DaemonFactory,
                                             daemon_env: dict[str, str],
                                             tmp_path: Path) -> None:
    record = _with_notify_send(daemon_env, tmp_path)
    when = datetime.now(UTC) + timedelta(seconds=3)  # the daemon's zone is UTC (TZ)
    (home / "config.toml").write_text(
        "[daemon]\nshutdown_grace_seconds = 1\n"
        f'[daily_summary]\ntime = "{when.strftime("%H:%M:%S")}"\ngrace_minutes = 5\n')
    write_agent(home / "agents", "quiet", schedule=NEVER, script="exit 0\n")
    daemon: DaemonProcess = daemons()
    daemon.start()
    assert _calls(record) == []
    calls = wait_for(lambda: _calls(record), 20, "the daily summary via notify-send")
    (argv,) = calls
    assert argv[-2] == "dotagent: daily summary"
    assert argv[-1] == (f"📊 Agents · {when.date().isoformat()}\n0/1 ok\n🕑 Stale:\n"
                        "  · quiet/main — never ran")
    guard = json.loads((home / "state/notify/summary.json").read_text())
    assert guard == {"sent_for": when.date().isoformat()}
    daemon.stop()
    # A restart inside the grace window does not send it again.
    again = daemons()
    again.start()
    again.wait_log("scanned", 20)
    again.stop()
    assert len(_calls(record)) == 1


def test_daemon_wide_notifier_hears_a_phantom_agent(home: Path, daemons: DaemonFactory,
                                                    daemon_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    record = _with_notify_send(daemon_env, tmp_path)
    (home / "config.toml").write_text(
        "[daemon]\nshutdown_grace_seconds = 1\n[daily_summary]\nenabled = false\n"
        '[[notifiers]]\ndriver = "desktop"\nevents = ["phantom_agent_detected"]\n')
    write_agent(home / "agents", "first", schedule=NEVER, script="exit 0\n")
    daemon = daemons()
    daemon.start()
    assert events_of(home, "manifest_loaded", agent="first")
    write_agent(home / "agents", "sneaky", schedule=NEVER, script="exit 0\n")
    wait_for(lambda: events_of(home, "phantom_agent_detected", agent="sneaky"), 10,
             "phantom_agent_detected")
    (argv,) = wait_for(lambda: _calls(record), 10, "the phantom notice via notify-send")
    assert "--urgency=critical" in argv
    assert argv[-1].startswith("🛡️ dotagent: phantom agent 'sneaky' appeared at ")
    assert argv[-1].endswith("[phantom_agent_detected]")
    daemon.stop()


def test_given_up_is_announced_once_by_the_daemon(home: Path, daemons: DaemonFactory,
                                                  daemon_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    record = _with_notify_send(daemon_env, tmp_path)
    (home / "config.toml").write_text(
        "[daemon]\nshutdown_grace_seconds = 1\n[daily_summary]\nenabled = false\n")
    write_agent(home / "agents", "flaky", schedule='type = "interval"\ninterval_minutes = 60',
                script="echo 'disk on fire' >&2\nexit 3\n", retry="max_retries = 0",
                extra='[[notifiers]]\ndriver = "desktop"\nevents = ["given_up"]\n')
    daemon = daemons()
    daemon.start()
    wait_for(lambda: events_of(home, "agent_given_up", agent="flaky"), 20, "agent_given_up")
    (argv,) = wait_for(lambda: _calls(record), 10, "the given_up notice")
    assert argv[-1] == "🚨 flaky/main gave up after 1 attempts (exit 3)\ndisk on fire"
    ladder = json.loads((home / "state/notify/alerts.json").read_text())
    assert ladder["episodes"]["flaky/main/given_up"]["count"] == 1
    daemon.signal(1)  # SIGHUP: a rescan and another sweep of the same failure
    daemon.wait_log("SIGHUP", 10)
    daemon.wait_log("scanned", 10, count=2)
    daemon.stop()
    assert len(_calls(record)) == 1


def test_daemon_wide_notifier_hears_secrets_refused(home: Path, daemons: DaemonFactory,
                                                    daemon_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    record = _with_notify_send(daemon_env, tmp_path)
    (home / "config.toml").write_text(
        "[daemon]\nshutdown_grace_seconds = 1\n[daily_summary]\nenabled = false\n"
        '[[notifiers]]\ndriver = "desktop"\n')
    secrets = home / "secrets.env"
    secrets.write_text("TOKEN=abc\n")
    secrets.chmod(0o644)
    daemon = daemons()
    daemon.start()
    wait_for(lambda: events_of(home, "secrets_refused"), 10, "secrets_refused")
    calls = wait_for(lambda: [c for c in _calls(record) if "secrets_refused" in c[-1]], 10,
                     "the secrets_refused notice")
    assert "--urgency=critical" in calls[0]
    assert "abc" not in json.dumps(_calls(record))
    daemon.stop()
