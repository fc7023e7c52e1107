"""OnCalendar engine: parse 10,000 expressions; next elapse of 10,000 parsed specs, mixed zones.

The PyPI `oncalendar` package runs the same next-elapse workload in the same process for
comparison (it has no separate parse step: constructing its iterator parses). Its figures and
how often it disagrees with us (we are checked against systemd by the oracle test) go in
`detail`.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dotagent.schedule.oncalendar import CalendarSpec, parse

METRICS = [("parse_10k_ms", "<= 1000"), ("oncalendar_next_fire_10k_ms", "<= 300")]

N = 10_000
RUNS = 5
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney",
         "America/Sao_Paulo", "Asia/Tokyo", "Europe/London"]
BASE = datetime(2026, 3, 9, 6, 30, 17, tzinfo=UTC)  # fixed: the numbers must be comparable


def workload(seed: int = 7) -> list[str]:
    """10,000 realistic expressions: the shapes people write in timers, with varied numbers."""
    rng = random.Random(seed)
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

    def hh() -> str:
        return f"{rng.randrange(24):02d}"

    def mm() -> str:
        return f"{rng.randrange(60):02d}"

    shapes = [
        lambda: f"*-*-* {hh()}:{mm()}:00",
        lambda: f"Mon..Fri {hh()}:{mm()}",
        lambda: f"{rng.choice(days)},{rng.choice(days)} {hh()}:{mm()}",
        lambda: f"*:0/{rng.choice([5, 10, 15, 20, 30])}",
        lambda: f"*-*-{rng.randrange(1, 29):02d} {hh()}:00",
        lambda: f"*-*~{rng.randrange(1, 4):02d} {hh()}:{mm()}",
        lambda: f"{rng.randrange(8, 12)}..{rng.randrange(16, 20)}:{mm()}",
        lambda: rng.choice(["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"]),
        lambda: f"*-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} {hh()}:{mm()}:00",
        lambda: f"*:*:0/{rng.choice(['0.5', '15', '30'])}",
        lambda: f"Sat {hh()}:{mm()} {rng.choice(ZONES)}",
        lambda: f"*-*-* {hh()}:{mm()} {rng.choice(ZONES)}",
    ]
    return [rng.choice(shapes)() for _ in range(N)]


def _median_ms(fn: Any) -> tuple[float, list[float]]:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


def run() -> list[dict[str, Any]]:
    exprs = workload()
    zones = [ZoneInfo(name) for name in ZONES]

    # Uncached parsing (parse, not parse_cached).
    parse_ms, parse_runs = _median_ms(lambda: [parse(e) for e in exprs])

    specs: list[CalendarSpec] = [parse(e) for e in exprs]
    locals_ = [zones[i % len(zones)] for i in range(N)]  # each spec in a different local zone
    bases = [BASE.astimezone(z) for z in locals_]

    def ours() -> list[datetime | None]:
        return [s.next_elapse(b, z) for s, b, z in zip(specs, bases, locals_, strict=True)]

    cold_started = time.perf_counter()
    mine = ours()
    cold_ms = (time.perf_counter() - cold_started) * 1000
    next_ms, next_runs = _median_ms(ours)

    detail: dict[str, Any] = {"runs_ms": [round(t, 1) for t in next_runs],
                              "first_run_ms": round(cold_ms, 1), "runs": RUNS}
    detail.update(_oncalendar_package(exprs, bases, mine))
    return [
        {"metric": "parse_10k_ms", "value": round(parse_ms, 1), "unit": "ms", "target": "<= 1000",
         "detail": {"runs_ms": [round(t, 1) for t in parse_runs], "expressions": N,
                    "cached": False}},
        {"metric": "oncalendar_next_fire_10k_ms", "value": round(next_ms, 1), "unit": "ms",
         "target": "<= 300", "detail": detail},
    ]


def _oncalendar_package(
    exprs: list[str], bases: list[datetime], mine: list[datetime | None]
) -> dict[str, Any]:
    """The PyPI package on the same workload: time, rejections, disagreements with us."""
    try:
        import oncalendar
    except ImportError as exc:
        return {"oncalendar_pkg": f"not installed ({exc})"}

    def theirs() -> tuple[int, int, list[str]]:
        rejected = differ = 0
        examples: list[str] = []
        for expr, base, expected in zip(exprs, bases, mine, strict=True):
            try:
                got = next(oncalendar.OnCalendar(expr, base))
            except Exception:
                rejected += 1
                continue
            if got != expected:
                differ += 1
                if len(examples) < 5:
                    examples.append(expr)
        return rejected, differ, examples

    ms, runs = _median_ms(theirs)
    rejected, differ, examples = theirs()
    return {
        "oncalendar_pkg_ms": round(ms, 1),
        "oncalendar_pkg_runs_ms": [round(t, 1) for t in runs],
        "oncalendar_pkg_rejected": rejected,
        "oncalendar_pkg_disagreements": differ,
        "oncalendar_pkg_disagreement_examples": examples,
        "oncalendar_pkg_note": "includes its parsing (it has no separate parse step)",
    }


if __name__ == "__main__":
    for row in run():
        print(row)
