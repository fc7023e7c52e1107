"""A notifier endpoint that hangs never delays the daemon's dispatches (they leave on the
outbox's threads), and the run's outcome is the agent's."""

from __future__ import annotations

import sys
from pathlib import Path

from daemon_kit import DaemonProcess, events_of, history_rows, wait_for, write_agent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

from notify_kit import http_endpoint


def test_dispatch_stays_on_time_while_the_endpoint_hangs(home: Path,
                                                         daemon: DaemonProcess) -> None:
    with http_endpoint() as endpoint:
        endpoint.delay = 60  # answers only when released (at teardown)
        write_agent(home / "agents", "tick", schedule="""
            type = "expression"
            expression = "*:*:0/1"
            """, script='echo "$AGENT_START_EPOCH"\n', extra=f"""
[[notifiers]]
driver = "webhook"
url = "{endpoint.url}/slow"
timeout_seconds = 10
""")
        daemon.start()

        def finished() -> list[dict[str, object]]:
            done = [r for r in history_rows(home, "tick") if r["outcome"] == "ok"]
            return done if len(done) >= 6 else []

        rows = wait_for(finished, 30, "6 finished runs while the endpoint hangs")
        fired = rows[1:]  # the first may be the catch-up of a window before the start
        windows = [float(r["window_at"]) for r in fired]
        # one run per second, back to back: no run waited for a notification
        gaps = [b - a for a, b in itertools.pairwise(windows)]
        assert sum(1 for g in gaps if g != 1) <= 1, gaps
        for r in fired:
            assert float(r["started_at"]) - float(r["window_at"]) < 0.5, r
        assert len(endpoint.requests) >= 2  # the deliveries are in flight, not dropped
        endpoint.release.set()
        assert daemon.stop() == 0
    assert events_of(home, "agent_run", agent="tick")
    assert all(e["exit_code"] == 0 for e in events_of(home, "agent_run", agent="tick"))
