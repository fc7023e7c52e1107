"""Agents and schedule states for the alert tests: a real manifest in the test's home, loaded
the way the daemon loads it, with a chosen ScheduleState."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dotagent.alerts.seam import Message
from dotagent.daemon.tick import Entry, load_entries
from dotagent.discovery import discover
from dotagent.paths import Home
from dotagent.schedule.windows import ScheduleState, WindowState

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[Message, list[Any]]] = []

    def send(self, message: Message, entries: Any) -> None:
        self.sent.append((message, list(entries)))


def agent(home: Path, name: str, notifiers: str, extra: str = "") -> Entry:
    d = home / "agents" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "agent.toml").write_text(textwrap.dedent(f"""
        [agent]
        name = "{name}"
        [run]
        command = "/bin/true"
        [defaults]
        max_retries = 1
        stale_after_minutes = 60
        [[schedules]]
        id = "main"
        type = "cron"
        weekdays = [0, 1, 2, 3, 4, 5, 6]
        hours = [9]
        minute = 0
        """) + textwrap.dedent(notifiers) + textwrap.dedent(extra))
    found = discover({"DOTAGENT_HOME": str(home)}, include_cwd=False)
    (entry,) = [e for e in load_entries(found, Home(home), UTC) if e.agent == name]
    return entry


def with_state(entry: Entry, **state: Any) -> Entry:
    return replace(entry, state=ScheduleState(**state))


NINE = NOW.replace(hour=9)
STALE = dict(last_success=NINE - timedelta(days=2),
             last_start=NINE - timedelta(days=2),
             window=WindowState(expected_at=NINE, missed=True))
GIVEN_UP = dict(last_success=NINE - timedelta(days=1), last_start=NINE,
                window=WindowState(expected_at=NINE, attempts=2, last_exit_code=3,
                                   last_attempt_at=NINE, given_up=True))
HEALTHY = dict(last_success=NINE + timedelta(minutes=1), last_start=NINE,
               window=WindowState(expected_at=NINE, attempts=1, last_exit_code=0,
                                  last_attempt_at=NINE))
