"""`[limits]` under the real daemon (multi-threaded: the limits are set by the exec wrapper
in the child, never by code run between fork and exec in the daemon)."""

from __future__ import annotations

import os
from pathlib import Path

from daemon_kit import DaemonProcess, events_of, history_rows, wait_for, write_agent


def test_daemon_runs_apply_cpu_seconds_nofile_and_nice(home: Path,
                                                      daemon: DaemonProcess) -> None:
    out = home.parent / f"{home.name}-probe.txt"
    write_agent(home / "agents", "spinner",
                schedule='type = "interval"\ninterval_minutes = 60',
                extra="[limits]\ncpu_seconds = 1\nnofile = 55\nnice = 4",
                script=f"""
                ulimit -n > {out}
                cut -d' ' -f19 /proc/self/stat >> {out}
                while :; do :; done
                """)
    daemon.start()
    [event] = wait_for(lambda: events_of(home, "agent_run", agent="spinner"), 30,
                       "the spinner's agent_run")
    assert event["exit_code"] == 152
    assert event["limit"] == "cpu_seconds limit (1 s) reached (SIGXCPU)"
    assert event["severity"] == "critical"
    lines = out.read_text().splitlines()
    assert lines[0] == "55"
    assert int(lines[1]) == max(4, os.getpriority(os.PRIO_PROCESS, 0))  # daemon inherits ours
    row = wait_for(lambda: [r for r in history_rows(home, "spinner")
                            if r["finished_at"] is not None], 10, "the history row")[0]
    assert row["outcome"] == "failed"
    assert row["stderr_tail"].endswith("[dotagent] cpu_seconds limit (1 s) reached (SIGXCPU)")
    assert daemon.stop() == 0
