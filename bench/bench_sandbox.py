"""sandbox_overhead_ms — the extra wall time bubblewrap adds to one run.

Two agents that differ only in `[security]` (`network = "deny"` plus one
`filesystem_writable` directory for the boxed one; both list `/bin/true` in
`allowed_commands`) both run
`/bin/true` through the one run lifecycle (`runner.lifecycle.execute`: lock, log, heartbeat,
spawn, audit), in-process, interleaved plain/boxed, after a warm-up of each (the bwrap probe
runs once per process and is not counted). The value is median(boxed) − median(plain).

Run alone: `.venv/bin/python bench/run.py sandbox`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemonkit import make_home

METRICS = [("sandbox_overhead_ms", "<= 15")]
RUNS = 60


def run() -> list[dict[str, Any]]:
    from dotagent.audit import AuditLog
    from dotagent.discovery import discover
    from dotagent.paths import Home
    from dotagent.runner.lifecycle import RunDeps, RunRequest, execute

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bwrap is not installed (apt install bubblewrap)")
    with tempfile.TemporaryDirectory(prefix="dotagent-bench-sandbox-") as tmp:
        home = make_home(Path(tmp))
        out = Path(tmp) / "out"
        out.mkdir()
        for name, extra in (("plain", ""), ("boxed", f'network = "deny"\n'
                                                    f'filesystem_writable = ["{out}"]\n')):
            (home.agents / name).mkdir()
            (home.agents / name / "agent.toml").write_text(
                f'[agent]\nname = "{name}"\ntimeout_seconds = 30\n[run]\n'
                'command = "/bin/true"\n[[schedules]]\nid = "main"\ntype = "interval"\n'
                f'interval_minutes = 60\n[security]\nallowed_commands = ["/bin/true"]\n{extra}')
        own = Home(home.root)
        deps = RunDeps(home=own, audit=AuditLog(own))
        times: dict[str, list[float]] = {"plain": [], "boxed": []}
        found = discover({"DOTAGENT_HOME": str(home.root), "PATH": "/usr/bin:/bin"},
                         include_cwd=False)
        for warm in (True, False):
            for _ in range(3 if warm else RUNS):
                for name in ("plain", "boxed"):
                    request = RunRequest(loaded=found.agents[name],
                                         schedule=found.agents[name].manifest.schedules[0],
                                         source="run-now", hooks=False, stdin_devnull=True)
                    t0 = time.perf_counter()
                    report = execute(request, deps)
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert report.outcome is not None and report.outcome.exit_code == 0, \
                        (name, report.outcome)
                    assert report.outcome.sandbox == ("bwrap" if name == "boxed" else "none")
                    if not warm:
                        times[name].append(elapsed)
    plain, boxed = statistics.median(times["plain"]), statistics.median(times["boxed"])
    value = boxed - plain
    return [{"metric": "sandbox_overhead_ms", "value": round(value, 2), "unit": "ms",
             "target": "<= 15",
             "detail": {"plain_median_ms": round(plain, 2), "boxed_median_ms": round(boxed, 2),
                        "runs_each": RUNS, "bwrap": bwrap,
                        "plain_p90_ms": round(statistics.quantiles(times["plain"], n=10)[-1],
                                              2),
                        "boxed_p90_ms": round(statistics.quantiles(times["boxed"], n=10)[-1],
                                              2)}}]
