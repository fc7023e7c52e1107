"""A `plugin` notifier in flight when the daemon is killed with SIGKILL: it was listed in
supervisor.json (kind `notify`), so the next daemon reaps it and the audit chain holds.
Before, only hook plugins were listed: the notifier's plugin outlived every restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from daemon_kit import DaemonFactory, dotagent, events_of, gone, wait_for, write_agent


def test_kill_9_with_a_plugin_notifier_in_flight_then_restart_reaps_it(
        home: Path, daemons: DaemonFactory, daemon_env: dict[str, str]) -> None:
    plugins = home / "plugins"
    plugins.mkdir()
    pidfile = home / "plugin.pid"
    plug = plugins / "dotagent-plugin-slow"
    plug.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nsleep 300\n")
    plug.chmod(0o755)
    write_agent(home / "agents", "noisy", schedule='type = "interval"\ninterval_minutes = 60',
                script="echo done\n",
                retry='\n[[notifiers]]\ndriver = "plugin"\nname = "slow"\n'
                      'timeout_seconds = 300\n')
    first = daemons().start()
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30,
             "the notifier's plugin to start")
    pid = int(pidfile.read_text())
    snapshot = home / "state" / "supervisor.json"

    def listed() -> list[dict[str, object]]:
        try:
            return [p for p in json.loads(snapshot.read_text()) if p["pid"] == pid]
        except (OSError, ValueError):
            return []

    [entry] = wait_for(listed, 10, "the plugin in supervisor.json")
    assert entry["kind"] == "notify" and entry["owner"] == {"agent": "noisy", "schedule": "main"}
    first.signal(signal.SIGKILL)
    first.wait()
    assert not gone(pid), "the orphan is still running"

    second = daemons().start()
    wait_for(lambda: gone(pid), 20, "the orphaned plugin to be reaped")
    [reaped] = wait_for(lambda: events_of(home, "orphan_reaped", agent="noisy"), 10,
                        "orphan_reaped")
    assert (reaped["kind"], reaped["pid"]) == ("notify", pid)
    assert second.stop() == 0
    verify = dotagent("audit", "verify", env=daemon_env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
