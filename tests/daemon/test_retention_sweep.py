"""The daemon's 03:00 retention sweep: old window files, history rows and logs go; once a day."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dotagent.config import Config
from dotagent.daemon.loop import Daemon
from dotagent.paths import Home
from dotagent.schedule.windows import WindowState
from dotagent.state.windows import WindowStore


def make(home: Path, lines: list[str]) -> Daemon:
    return Daemon(Home(home), Config(), zone=UTC, log=lines.append)


def test_sweep_runs_at_three_once_per_day(dotagent_home: Path) -> None:
    lines: list[str] = []
    daemon = make(dotagent_home, lines)
    store = WindowStore(Home(dotagent_home), zone=UTC)
    old = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
    new = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    for when in (old, new):
        store.save("a", "default", "s", WindowState(expected_at=when, attempts=1,
                                                    last_exit_code=0))
    for path in store.directory.iterdir():
        if "2026-10-01" in path.name:
            stamp = old.timestamp()
            os.utime(path, (stamp, stamp))
    log_dir = dotagent_home / "logs" / "agents" / "a"
    log_dir.mkdir(parents=True)
    stale = log_dir / "a.log.20260901T000000.000000Z"
    stale.write_text("old output\n")
    t = datetime(2026, 9, 1, tzinfo=UTC).timestamp()
    os.utime(stale, (t, t))

    daemon.retention(datetime(2026, 12, 2, 2, 59, tzinfo=UTC))  # not yet 03:00
    assert stale.exists() and not any("retention" in line for line in lines)

    daemon.retention(datetime(2026, 12, 2, 3, 10, tzinfo=UTC))
    names = sorted(p.name for p in store.directory.iterdir() if p.suffix == ".json")
    assert names == ["a-default-2026-12-01-0800.json"]
    assert not stale.exists()  # older than per_agent_retention_days (14)
    assert any(line.startswith("log retention sweep completed") for line in lines)

    count = len(lines)
    daemon.retention(datetime(2026, 12, 2, 3, 20, tzinfo=UTC))  # once per date
    assert len(lines) == count


def test_next_retention_wake_is_the_next_three_oclock(dotagent_home: Path) -> None:
    daemon = make(dotagent_home, [])
    now = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    assert daemon._next_retention(now) == datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
    now = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    assert daemon._next_retention(now) == datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert daemon._next_retention(now) - now == timedelta(hours=2)
