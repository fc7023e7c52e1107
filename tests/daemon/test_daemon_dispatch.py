"""The real daemon fires expression schedules at their instants, once per window."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import time
from pathlib import Path

from daemon_kit import (
    DaemonProcess,
    events_of,
    history_rows,
    process_state,
    wait_for,
    write_agent,
)

FIRES = 4


def test_every_even_second_fires_once_per_window(home: Path, daemon: DaemonProcess) -> None:
    d = write_agent(home / "agents", "tick", schedule="""
        type = "expression"
        expression = "*:*:0/2"
        """, script='echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/fires"\n')
    daemon.start()

    def finished() -> list[dict[str, object]]:
        rows = history_rows(home, "tick")
        done = [r for r in rows if r["outcome"] != "running"]
        return done if len(done) >= FIRES + 1 else []

    wait_for(finished, 60, f"{FIRES + 1} finished runs")
    assert daemon.stop() == 0
    rows = history_rows(home, "tick")
    # The first run may be the catch-up of the window before the daemon started (S14.1);
    # every later one is the daemon firing at an instant.
    fired = rows[1:]
    starts = [int(x) for x in (d / "fires").read_text().split()][1:]
    assert len(starts) == len(fired) >= FIRES
    windows = [r["window_at"] for r in fired]
    for w, start, row in zip(windows, starts, fired, strict=True):
        assert w == int(w) and int(w) % 2 == 0, f"window {w} is not an even second"
        assert row["outcome"] == "ok" and row["source"] == "daemon" and row["attempt"] == 1
        # The agent started within its own window (AGENT_START_EPOCH is whole seconds).
        assert w <= start < w + 2, (w, start)
    assert len(set(windows)) == len(windows), f"a window fired twice: {windows}"
    gaps = [b - a for a, b in itertools.pairwise(windows)]
    assert all(g > 0 and g % 2 == 0 for g in gaps), gaps
    # (Nearly) every even second: at most one window lost to a stall of the test machine.
    assert sum(1 for g in gaps if g != 2) <= 1, gaps
    assert len(events_of(home, "agent_run", agent="tick")) == len(rows)
    # The window file of the newest window is upstream's shape, one attempt, exit 0.
    files = sorted((home / "state" / "windows").glob("tick-default-*.json"))
    latest = max((json.loads(f.read_text()) for f in files), key=lambda w: w["expected_at"])
    assert latest["expected_at"] == int(windows[-1])
    assert (latest["attempts"], latest["last_attempt_exit_code"]) == (1, 0)


def test_a_frozen_daemon_catches_up_once(home: Path, daemon: DaemonProcess) -> None:
    """SIGSTOP for longer than a window (a frozen daemon, a debugger, a VM paused): on SIGCONT
    the latest window passed runs once; the others are skipped, not run in a burst."""
    write_agent(home / "agents", "tick", schedule="""
        type = "expression"
        expression = "*:*:0/2"
        """, script="exit 0\n")
    daemon.start()

    def finished(n: int) -> bool:
        return sum(r["outcome"] != "running" for r in history_rows(home, "tick")) >= n

    wait_for(lambda: finished(1), 30, "a first run")
    # Freeze between two runs (one just ended; the next window is up to 2 s away) ...
    before = len(history_rows(home, "tick"))
    wait_for(lambda: finished(before + 1), 10, "the next run")
    daemon.signal(signal.SIGSTOP)
    frozen_at = time.time()
    try:
        wait_for(lambda: process_state(daemon.pid) == "T", 5, "the daemon to stop")
        # ... for at least two windows, and thaw 0.3 s after a window: the latest window
        # passed is unambiguous, and the next is 1.7 s away.
        thaw = math.ceil((frozen_at + 4.2) / 2) * 2 + 0.3
        time.sleep(max(0.0, thaw - time.time()))  # the scenario itself: stay frozen
    finally:
        daemon.signal(signal.SIGCONT)
    thawed_at = time.time()
    wait_for(lambda: any(r["window_at"] > thawed_at and r["outcome"] != "running"
                         for r in history_rows(home, "tick")), 20,
             "a run of a window after the thaw")
    assert daemon.stop() == 0

    rows = history_rows(home, "tick")
    during = [r for r in rows if frozen_at < r["window_at"] <= thawed_at]
    assert len(during) == 1, f"not one catch-up run: {during}"
    (catch_up,) = during
    latest = math.floor(thawed_at / 2) * 2
    assert catch_up["window_at"] == latest, (catch_up["window_at"], latest)
    assert catch_up["started_at"] >= thawed_at and catch_up["attempt"] == 1
    windows = [r["window_at"] for r in rows]
    assert len(set(windows)) == len(windows)
    assert not events_of(home, "run_skipped_overlap")  # the agent was not running


def test_runs_leak_no_file_descriptors(home: Path, daemon: DaemonProcess) -> None:
    write_agent(home / "agents", "tick", schedule="""
        type = "expression"
        expression = "*:*:0/0.5"
        """, script="exit 0\n")
    daemon.start()

    def finished(n: int) -> bool:
        return sum(r["outcome"] == "ok" for r in history_rows(home, "tick")) >= n

    def open_fds() -> int:
        """The fewest descriptors seen over a second (between runs, whatever a run in
        flight holds is closed again)."""
        counts = []
        for _ in range(25):
            counts.append(len(os.listdir(f"/proc/{daemon.pid}/fd")))
            time.sleep(0.04)
        return min(counts)

    wait_for(lambda: finished(2), 30, "two runs")
    before = open_fds()
    done = sum(r["outcome"] == "ok" for r in history_rows(home, "tick"))
    wait_for(lambda: finished(done + 6), 30, "six more runs")
    after = open_fds()
    assert daemon.stop() == 0
    assert after <= before + 1, f"{after - before} descriptors more after six runs"


def test_a_failed_window_is_retried_after_a_backoff_in_seconds(home: Path,
                                                               daemon: DaemonProcess) -> None:
    """`retry_backoff_seconds = [2]`: the first attempt fails, the retry comes about 2 s
    later (not at the next window an hour away) and succeeds: `recovered`."""
    first = home / "failed-once"
    write_agent(home / "agents", "flaky", schedule='type = "interval"\ninterval_minutes = 60',
                script=f'if [ ! -e {first} ]; then : > {first}; exit 3; fi\nexit 0\n',
                retry="max_retries = 1\nretry_backoff_seconds = [2]")
    daemon.start()
    rows = wait_for(lambda: [r for r in history_rows(home, "flaky")
                             if r["finished_at"] is not None][-2:]
                    if len([r for r in history_rows(home, "flaky")
                            if r["finished_at"] is not None]) >= 2 else None,
                    30, "the retry")
    by_attempt = sorted(rows, key=lambda r: r["attempt"])
    assert [(r["attempt"], r["exit_code"]) for r in by_attempt] == [(1, 3), (2, 0)]
    gap = by_attempt[1]["started_at"] - by_attempt[0]["started_at"]
    assert 2.0 <= gap < 10, gap  # never before its step is over (window files keep seconds)
    assert events_of(home, "agent_recovered", agent="flaky")
    assert daemon.stop() == 0
