"""Hooks through the real daemon: a preflight refusal stops the run; a sink is a supervised
process listed in supervisor.json while it runs (kind `sink`)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from daemon_kit import DaemonProcess, events_of, history_rows, wait_for, write_agent


def plugin(home: Path, name: str, body: str) -> Path:
    d = home / "plugins"
    d.mkdir(exist_ok=True)
    path = d / f"dotagent-plugin-{name}"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def test_preflight_refusal_and_a_supervised_sink(home: Path, daemon: DaemonProcess) -> None:
    plugin(home, "gate", """
        import json, sys
        sys.stdin.read()
        print(json.dumps({"ok": False, "error": "not now", "suggest": "try later"}))
        """)
    marker = home / "sink-started"
    plugin(home, "slow-sink", f"""
        import json, sys, time
        payload = json.load(sys.stdin)
        open({str(home / 'sunk')!r}, 'w').write(payload["message"])
        open({str(marker)!r}, 'w').write('x')
        time.sleep(3)
        print(json.dumps({{"ok": True}}))
        """)
    ran = home / "gated-ran"
    write_agent(home / "agents", "gated", schedule='type = "interval"\ninterval_minutes = 60',
                script=f"touch {ran}\n", extra='')
    toml = home / "agents" / "gated" / "agent.toml"
    toml.write_text(toml.read_text() + '\n[[preflight]]\nplugin = "gate"\n')
    write_agent(home / "agents", "sunk", schedule='type = "interval"\ninterval_minutes = 60',
                script="printf 'hello\\nworld'\n")
    toml = home / "agents" / "sunk" / "agent.toml"
    toml.write_text(toml.read_text() + '\n[[on_success]]\nplugin = "slow-sink"\n')
    daemon.start()

    wait_for(lambda: events_of(home, "preflight_failed", agent="gated"), 30,
             "the preflight refusal")
    [refusal] = events_of(home, "preflight_failed", agent="gated")
    assert (refusal["plugin"], refusal["suggest"]) == ("gate", "try later")
    wait_for(lambda: [r for r in history_rows(home, "gated")
                      if r["outcome"] == "preflight_failed"], 30, "the history row")
    assert not ran.exists()
    assert not events_of(home, "agent_run", agent="gated")

    wait_for(marker.exists, 30, "the sink to start")
    snapshot = json.loads((home / "state" / "supervisor.json").read_text())
    entries = snapshot["processes"] if isinstance(snapshot, dict) else snapshot
    kinds = [(e["kind"], e["owner"]["agent"]) for e in entries]
    assert ("sink", "sunk") in kinds, snapshot
    wait_for(lambda: events_of(home, "plugin_invoked", agent="sunk"), 30, "the sink's end")
    assert (home / "sunk").read_text() == "hello\nworld"
    [call] = events_of(home, "plugin_invoked", agent="sunk")
    assert (call["plugin"], call["plugin_kind"], call["ok"]) == ("slow-sink", "sink", True)
    assert daemon.stop() == 0


def test_a_run_stopped_by_shutdown_still_reaches_its_failure_hook(home: Path,
                                                                  daemon: DaemonProcess) -> None:
    """SIGTERM to the daemon cuts a long run; the run's `[[on_failure]]` hook then gets the
    event within the shutdown grace (it used to be sent SIGTERM as it started)."""
    told = home / "told.json"
    plugin(home, "pager", f"""
        import json, sys, time
        payload = json.load(sys.stdin)
        time.sleep(0.3)
        open({str(told)!r}, 'w').write(json.dumps(payload))
        print(json.dumps({{"ok": True}}))
        """)
    started = home / "long-started"
    write_agent(home / "agents", "long", schedule='type = "interval"\ninterval_minutes = 60',
                script=f"touch {started}\nsleep 60\n")
    toml = home / "agents" / "long" / "agent.toml"
    toml.write_text(toml.read_text() + '\n[[on_failure]]\nplugin = "pager"\n')
    (home / "config.toml").write_text("[daemon]\nshutdown_grace_seconds = 3\n")
    daemon.start()
    wait_for(started.exists, 30, "the long run to start")
    assert daemon.stop() == 0
    payload = json.loads(told.read_text())
    assert payload["agent"] == "long" and payload["kind"] == "notify"
    assert payload["event"] in ("attempt_failed", "timed_out", "given_up")
    [invoked] = events_of(home, "plugin_invoked", plugin="pager")
    assert invoked["ok"] is True
