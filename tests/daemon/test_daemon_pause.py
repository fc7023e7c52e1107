"""`pause` / `resume` and `bootstrap` against a real daemon: a paused schedule is not
dispatched (its windows are settled unrun, never fired in a burst on resume), raises no alert,
and a pause that reaches its end lifts itself on time; bootstrapped windows neither run nor
raise a stale alert. Alerts go to a `webhook` notifier on a real HTTP server."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon_kit import (
    DaemonFactory,
    DaemonProcess,
    dotagent,
    events_of,
    history_rows,
    wait_for,
    write_agent,
)

from dotagent.paths import Home
from dotagent.state.pause import Pauses

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from notify_kit import Endpoint, http_endpoint

EVERY_SECOND = """
    type = "expression"
    expression = "*:*:0/1"
    """


def _notifier(endpoint: Endpoint, *events: str) -> str:
    listed = ", ".join(f'"{e}"' for e in events)
    return (f'\n[[notifiers]]\ndriver = "webhook"\nurl = "{endpoint.url}/hook"\n'
            f"timeout_seconds = 5\nevents = [{listed}]\n")


def _bodies(endpoint: Endpoint) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in endpoint.requests]


def test_paused_agent_is_not_dispatched_and_resumes_without_a_burst(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str]) -> None:
    write_agent(home / "agents", "beat", schedule=EVERY_SECOND, script="exit 0\n")
    daemon.start()
    wait_for(lambda: len(history_rows(home, "beat")) >= 2, 20, "two runs of beat")

    p = dotagent("pause", "beat", env=daemon_env)
    assert (p.returncode, p.stdout, p.stderr) == (
        0, "paused beat (every schedule) until resumed\n", "")
    daemon.wait_log("pauses: beat (until resumed)", 10)
    first = daemon.log().count("paused: beat/main window")
    daemon.wait_log("paused: beat/main window", 15, count=first + 1)
    runs = len(history_rows(home, "beat"))  # a run dispatched before the pause has ended
    # Four more windows come due while paused: settled, none of them run.
    daemon.wait_log("paused: beat/main window", 15, count=first + 5)
    assert len(history_rows(home, "beat")) == runs
    windows = sorted((home / "state" / "windows").glob("beat-*.json"))
    assert json.loads(windows[-1].read_text())["settled"] == "paused"

    resumed_at = time.time()
    p = dotagent("resume", "beat", env=daemon_env)
    assert (p.returncode, p.stdout) == (
        0, "resumed beat (every schedule; it was paused until resumed)\n")
    rows = wait_for(lambda: (r := history_rows(home, "beat"))[runs + 2:] and r, 20,
                    "beat running again after resume")
    after = rows[runs:]
    # From the next window on, one run per window: nothing that came due while paused runs
    # (it would have a window before the resume), and nothing is caught up.
    assert all(float(r["window_at"]) > resumed_at - 1.0 for r in after), after
    assert len({r["window_at"] for r in after}) == len(after)
    assert events_of(home, "window_missed", agent="beat") == []
    assert daemon.stop() == 0

    [paused] = events_of(home, "agent_paused", agent="beat")
    assert (paused["severity"], paused["schedule"], paused["until_iso"], paused["reason"]) == (
        "notice", "", "", "paused until resumed")
    [lifted] = events_of(home, "agent_resumed", agent="beat")
    assert (lifted["severity"], lifted["schedule"]) == ("notice", "")
    assert lifted["reason"].startswith("resumed before its end (it was paused until resumed)")


def test_a_paused_failing_agent_raises_no_alert_until_resumed(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str]) -> None:
    with http_endpoint() as endpoint:
        write_agent(home / "agents", "flaky", schedule=EVERY_SECOND, script="exit 3\n",
                    retry="max_retries = 0", extra=_notifier(endpoint, "given_up", "stale"))
        p = dotagent("pause", "flaky", "--schedule", "main", env=daemon_env)
        assert (p.returncode, p.stdout) == (0, "paused flaky/main until resumed\n")
        daemon.start()
        daemon.wait_log("paused: flaky/main window", 15, count=4)
        assert history_rows(home, "flaky") == []
        assert events_of(home, "agent_given_up") == [] and events_of(home, "agent_run") == []
        assert endpoint.requests == []  # no stale alert either: windows settled, not missed

        p = dotagent("resume", "flaky", "--schedule", "main", env=daemon_env)
        assert (p.returncode, p.stdout) == (
            0, "resumed flaky/main (it was paused until resumed)\n")
        # The channel works: once resumed, the first failure is announced.
        endpoint.wait_requests(1, timeout=20)
        body = _bodies(endpoint)[0]
        assert (body["event"], body["agent"], body["schedule"]) == ("given_up", "flaky", "main")
        assert daemon.stop() == 0
    [lifted] = events_of(home, "agent_resumed", agent="flaky")
    assert lifted["schedule"] == "main"


def test_a_pause_that_ends_lifts_itself_on_time(home: Path, daemon: DaemonProcess) -> None:
    write_agent(home / "agents", "beat", schedule=EVERY_SECOND, script="exit 0\n")
    daemon.start()
    wait_for(lambda: history_rows(home, "beat"), 20, "a first run of beat")
    # `--for` counts minutes; the store is given an end 5 s away, and the daemon is told as
    # `pause` tells it.
    since = time.time()
    until = int(since) + 5
    Pauses(Home(home)).pause("beat", None, until, since)
    os.kill(daemon.pid, signal.SIGUSR1)
    daemon.wait_log("SIGUSR1: re-reading the pauses", 10)
    rows = wait_for(lambda: [r for r in history_rows(home, "beat")
                             if float(r["window_at"]) >= until], 20,
                    "a run after the pause ended")
    # Nothing ran for the windows inside the pause. The first window after `since` may have
    # been handed to a worker just before the file was written (a run is prepared 50 ms
    # ahead of its instant): a pause holds from the daemon's next decision.
    inside = [r for r in history_rows(home, "beat")
              if int(since) + 2 <= float(r["window_at"]) < until]
    assert inside == []
    assert float(rows[0]["window_at"]) - until < 2.0, rows[0]  # it resumed by itself, on time
    assert "paused: beat/main window" in daemon.log()
    assert daemon.stop() == 0


def _daily_three_hours_ago() -> str:
    at = (datetime.now(UTC) - timedelta(hours=3)).strftime("%H:%M:%S")
    return f"""
        type = "expression"
        expression = "*-*-* {at}"
        stale_after_minutes = 1
        """


def test_bootstrapped_windows_neither_run_nor_raise_a_stale_alert(
        home: Path, daemons: DaemonFactory, daemon_env: dict[str, str]) -> None:
    daemon_env["TZ"] = "UTC"
    with http_endpoint() as endpoint:
        write_agent(home / "agents", "old", schedule=_daily_three_hours_ago(),
                    script="exit 0\n", extra=_notifier(endpoint, "stale", "given_up"))
        write_agent(home / "agents", "fresh", schedule="""
            type = "interval"
            interval_minutes = 30
            """, script="exit 0\n", extra=_notifier(endpoint, "stale", "given_up"))
        p = dotagent("bootstrap", env=daemon_env)
        assert p.returncode == 0, p.stderr
        assert p.stdout.endswith("settled 2 window(s) of 2 schedule(s); each runs next at "
                                 "its next window\n"), p.stdout
        [boot] = events_of(home, "windows_bootstrapped")
        assert (boot["count"], boot["schedules"], boot["severity"]) == (2, 2, "notice")
        # The control: an agent bootstrap never saw, overdue the same way.
        write_agent(home / "agents", "control", schedule=_daily_three_hours_ago(),
                    script="exit 0\n", extra=_notifier(endpoint, "stale", "given_up"))
        daemon = daemons()
        daemon.start()
        endpoint.wait_requests(1, timeout=20)
        # Stopping drains the notices queued by the sweep that judged every schedule.
        assert daemon.stop() == 0
        bodies = _bodies(endpoint)
        assert [(b["event"], b["agent"]) for b in bodies] == [("stale", "control")]
        assert history_rows(home, "old") == [] and history_rows(home, "fresh") == []
        assert events_of(home, "window_missed", agent="old") == []
        assert len(events_of(home, "window_missed", agent="control")) == 1

        # Bootstrap while a daemon runs: `control`'s missed window is settled, and the
        # daemon is told (it re-reads the window files at once).
        daemon = daemons()
        daemon.start()
        p = dotagent("bootstrap", "--json", env=daemon_env)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert list(out) == ["dry_run", "schedules", "settled"]
        assert (out["dry_run"], out["schedules"]) == (False, 3)
        [item] = out["settled"]
        assert list(item) == ["agent", "schedule", "window", "was"]
        assert (item["agent"], item["schedule"], item["was"]) == ("control", "main", "missed")
        daemon.wait_log("SIGUSR1: re-reading the pauses and the window files", 10)
        assert daemon.stop() == 0
        assert len(endpoint.requests) == 1
    assert len(events_of(home, "windows_bootstrapped")) == 2
