"""Next fire for 10,000 already-parsed mixed schedules (BENCHMARKS.md: next_fire_10k_ms).

A third cron sets, a third intervals, a third OnCalendar expressions, spread over several time
zones, each with a recorded latest window, as the daemon holds them. Measured: `next_event`
over all of them (what the daemon computes before it sleeps), and the plain next elapse of
each schedule. The `oncalendar` package's time for the same calendar expressions is reported
beside it.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dotagent.schedule.oncalendar import parse
from dotagent.schedule.rules import calendar_rule, cron_expression
from dotagent.schedule.windows import (
    IntervalRule,
    Policy,
    ScheduleState,
    WindowState,
    next_event,
    previous_fire,
)

METRICS = [("next_fire_10k_ms", "<= 300")]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
EXPRESSIONS = ["Mon..Fri *-*-* 08:30", "*-*-* 06,18:00:00", "Sat *-*~01 23:59",
               "*:0/15", "hourly", "*-*-01 04:00 UTC", "Tue,Thu 12:00 Europe/Berlin",
               "daily", "*-02-29 10:00", "Sun 02:30"]
POLICY = Policy(3, (5, 15, 30), 120)
NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def build(n: int = 10_000) -> list[tuple[object, ScheduleState, Policy]]:
    items = []
    for i in range(n):
        zone = ZoneInfo(ZONES[i % len(ZONES)])
        kind = i % 3
        if kind == 0:
            spec = parse(cron_expression([1 + i % 5, (3 + i) % 7], [i % 24, (i * 7) % 24],
                                         i % 60))
        elif kind == 2:
            spec = parse(EXPRESSIONS[i % len(EXPRESSIONS)])
        if kind == 1:
            rule: object = IntervalRule(5 + i % 240)
            start = NOW - timedelta(minutes=i % 200)
            state = ScheduleState(start, start, WindowState(start, 1, start, 0))
        else:
            rule = calendar_rule(spec, zone)
            # The daemon's steady state: the latest window is recorded (and succeeded).
            last = previous_fire(rule.next_after, NOW)  # type: ignore[attr-defined]
            state = ScheduleState(last, last, WindowState(last, 1, last, 0) if last else None)
        items.append((rule, state, POLICY))
    return items


def run() -> list[dict[str, object]]:
    items = build()
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        next_event(items, NOW)  # type: ignore[arg-type]
        timings.append(time.perf_counter() - t0)
    plain = []
    rules = [r for r, _, _ in items]
    for _ in range(5):
        t0 = time.perf_counter()
        for r in rules:
            if isinstance(r, IntervalRule):
                continue
            r.next_after(NOW)  # type: ignore[attr-defined]
        plain.append(time.perf_counter() - t0)
    detail: dict[str, object] = {
        "next_event_ms": round(statistics.median(timings) * 1000, 1),
        "calendar_next_elapse_only_ms": round(statistics.median(plain) * 1000, 1),
        "schedules": len(items),
    }
    try:
        import oncalendar  # type: ignore[import-not-found]

        texts = [cron_expression([1 + i % 5, (3 + i) % 7], [i % 24, (i * 7) % 24], i % 60)
                 for i in range(0, 10_000, 3)]
        texts += [EXPRESSIONS[i % len(EXPRESSIONS)].replace(" UTC", "")
                  .replace(" Europe/Berlin", "") for i in range(2, 10_000, 3)]
        t0 = time.perf_counter()
        parsed = []
        for t in texts:
            # It rejects some forms we accept: counted below, not hidden.
            with contextlib.suppress(Exception):
                parsed.append(oncalendar.OnCalendar(t, NOW))
        t1 = time.perf_counter()
        for it in parsed:
            next(it)
        t2 = time.perf_counter()
        detail["oncalendar_pkg_parse_ms"] = round((t1 - t0) * 1000, 1)
        detail["oncalendar_pkg_next_ms"] = round((t2 - t1) * 1000, 1)
        detail["oncalendar_pkg_accepted"] = f"{len(parsed)}/{len(texts)}"
    except Exception as exc:  # the comparison is informational
        detail["oncalendar_pkg_error"] = f"{type(exc).__name__}: {exc}"
    return [{"metric": "next_fire_10k_ms", "value": detail["next_event_ms"], "unit": "ms",
             "target": "<= 300", "detail": detail}]
