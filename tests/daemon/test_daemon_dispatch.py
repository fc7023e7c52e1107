"""The real daemon fires expression schedules at their instants, once per window."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_kit import DaemonProcess, events_of, history_rows, wait_for, write_agent

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
    gaps = [b - a for a, b in zip(windows, windows[1:], strict=False)]
    assert all(g > 0 and g % 2 == 0 for g in gaps), gaps
    # (Nearly) every even second: at most one window lost to a stall of the test machine.
    assert sum(1 for g in gaps if g != 2) <= 1, gaps
    assert len(events_of(home, "agent_run", agent="tick")) == len(rows)
    # The window file of the newest window is upstream's shape, one attempt, exit 0.
    files = sorted((home / "state" / "windows").glob("tick-default-*.json"))
    latest = max((json.loads(f.read_text()) for f in files), key=lambda w: w["expected_at"])
    assert latest["expected_at"] == int(windows[-1])
    assert (latest["attempts"], latest["last_attempt_exit_code"]) == (1, 0)
