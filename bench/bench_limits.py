"""limits_overhead_ms — what `[limits]` adds to the start of a run.

The same `/bin/true` run through `runner.process.supervise` plain and through the limits
exec wrapper (`cpu_seconds`, `nofile`, `nice`, `memory_mb` all set), 60 runs each,
interleaved; the value is the median of the paired differences (wall time, spawn to exit,
as `supervise` measures it, plus the Popen itself).

Run alone: `.venv/bin/python bench/run.py limits`.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from dotagent.manifest import Limits
from dotagent.runner.limits import wrap
from dotagent.runner.process import supervise

METRICS = [("limits_overhead_ms", "<= 15")]
RUNS = 60


def _once(argv: list[str], exe: str) -> float:
    started = time.perf_counter()
    result = supervise(argv, executable=exe, cwd=Path("/"), env={"PATH": "/usr/bin:/bin"},
                       timeout=30, on_output=lambda stream, chunk: None, stdin_devnull=True)
    assert result.exit_code == 0, result
    return (time.perf_counter() - started) * 1000


def run() -> list[dict[str, Any]]:
    limits = Limits(memory_mb=256, cpu_seconds=60, nofile=256, nice=1)
    plain = (["true"], "/bin/true")
    limited = wrap(["true"], "/bin/true", limits)
    for _ in range(5):  # warm the page cache for both
        _once(*plain)
        _once(*limited)
    a: list[float] = []
    b: list[float] = []
    for _ in range(RUNS):
        a.append(_once(*plain))
        b.append(_once(*limited))
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    return [{"metric": "limits_overhead_ms", "value": round(statistics.median(diffs), 2),
             "unit": "ms per run", "target": "<= 15",
             "detail": {"plain_median_ms": round(statistics.median(a), 2),
                        "limited_median_ms": round(statistics.median(b), 2), "runs": RUNS}}]
