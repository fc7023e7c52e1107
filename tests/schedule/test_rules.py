"""Cron sets mean their OnCalendar equivalent, checked against systemd-analyze itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dotagent.schedule.rules import cron_expression, cron_rule

CASES = [
    ([1, 5], [8, 18], 30, "Mon,Fri *-*-* 08,18:30:00"),
    ([], [], 5, "*-*-* *:05:00"),
    ([0, 6], [0], 0, "Sun,Sat *-*-* 00:00:00"),
    ([3, 3, 1], [23, 7], 59, "Mon,Wed *-*-* 07,23:59:00"),
]


@pytest.mark.parametrize(("weekdays", "hours", "minute", "expr"), CASES)
def test_cron_expression(weekdays: list[int], hours: list[int], minute: int, expr: str) -> None:
    assert cron_expression(weekdays, hours, minute) == expr


def systemd_next(expr: str, zone: str, base: int, n: int) -> list[int]:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is required for the oracle (apt-get install systemd)"
    out = subprocess.run(
        [exe, "calendar", f"--base-time=@{base}", f"--iterations={n}", expr],
        env={**os.environ, "TZ": zone, "LC_ALL": "C"}, capture_output=True, text=True,
        check=True).stdout
    epochs = []
    for line in out.splitlines():
        if "(in UTC):" in line:
            stamp = line.split("(in UTC):", 1)[1].strip()  # "Mon 2026-03-09 06:30:00 UTC"
            dt = datetime.strptime(stamp[4:23], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            epochs.append(int(dt.timestamp()))
    return epochs


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York",
                                  "Australia/Lord_Howe"])
@pytest.mark.parametrize(("weekdays", "hours", "minute"),
                         [([1, 5], [8, 18], 30), ([], [2], 30), ([0], [1, 2, 3], 0),
                          ([], [], 15)])
def test_cron_sets_agree_with_systemd_across_dst(zone: str, weekdays: list[int],
                                                 hours: list[int], minute: int) -> None:
    # Bases just before the spring-forward and fall-back weekends of both hemispheres.
    for base in (1774735200, 1792018800, 1775340000, 1759586400):
        rule = cron_rule(weekdays, hours, minute, ZoneInfo(zone))
        expr = cron_expression(weekdays, hours, minute)
        expected = systemd_next(expr, zone, base, 12)
        got, t = [], datetime.fromtimestamp(base, UTC)
        for _ in range(len(expected)):
            nxt = rule.next_after(t)
            assert nxt is not None
            got.append(int(nxt.timestamp()))
            t = nxt
        assert got == expected, (expr, zone, base)


def test_rule_for_manifest_schedules() -> None:
    from pathlib import Path

    from dotagent.manifest import parse_manifest
    from dotagent.schedule.rules import rule_for
    from dotagent.schedule.windows import IntervalRule

    text = b"""
[agent]
name = "r"
[run]
command = "true"
[[schedules]]
id = "c"
type = "cron"
weekdays = [1]
hours = [8]
timezone = "Asia/Tokyo"
[[schedules]]
id = "i"
type = "interval"
interval_minutes = 90
args = ["i"]
[[schedules]]
id = "e"
type = "expression"
expression = "*-*-* 12:00 UTC"
args = ["e"]
"""
    m = parse_manifest(text, Path("r/agent.toml")).manifest
    assert m is not None
    berlin = ZoneInfo("Europe/Berlin")
    base = datetime(2026, 3, 9, 0, 0, tzinfo=UTC)  # Monday 09:00 in Tokyo
    cron, interval, expr = (rule_for(s, berlin) for s in m.schedules)
    assert cron.next_after(base) == datetime(2026, 3, 15, 23, 0, tzinfo=UTC)  # Mon 08:00 JST
    assert isinstance(interval, IntervalRule) and interval.minutes == 90
    assert expr.next_after(base) == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
