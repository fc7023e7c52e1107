"""Shell completion with 500 agents (completion_500_ms): what one TAB costs.

The slowest of three answers a shell asks for — the command names (`dotagent <TAB>`), agent
names (`dotagent run a<TAB>`) and one agent's schedule ids (`dotagent run NAME --schedule
<TAB>`) — each the median of 5 runs of the real `dotagent` with `_DOTAGENT_COMPLETE`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = [("completion_500_ms", "<= 600")]

BIN = Path(sys.executable).parent
RUNS = 5

MANIFEST = """\
[agent]
name = "agent-{i:03d}"

[run]
command = "true"

[[schedules]]
id = "often"
type = "interval"
interval_minutes = 5

[[schedules]]
id = "morning"
type = "cron"
weekdays = []
hours = [8]
args = ["--morning"]
"""

CASES = {
    "commands": ("dotagent ", 1, None),
    "agents": ("dotagent run agent-1", 2, 100),  # agent-1, agent-10 .. agent-199
    "schedules": ("dotagent run agent-042 --schedule ", 4, 2),
}


def _complete(words: str, cword: int, env: dict[str, str], cwd: str) -> tuple[float, int]:
    run_env = dict(env, _DOTAGENT_COMPLETE="bash_complete", COMP_WORDS=words,
                   COMP_CWORD=str(cword))
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / "dotagent")], env=run_env, cwd=cwd, capture_output=True,
                       text=True, check=False)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0 or p.stderr:
        raise RuntimeError(f"completion of {words!r} failed: {p.stderr[-300:]}")
    return elapsed, len([line for line in p.stdout.splitlines() if line])


def run() -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOTAGENT_")}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        for i in range(500):
            d = home / "agents" / f"agent-{i:03d}"
            d.mkdir(parents=True)
            (d / "agent.toml").write_text(MANIFEST.format(i=i))
        env["DOTAGENT_HOME"] = str(home)
        medians: dict[str, float] = {}
        for case, (words, cword, expected) in CASES.items():
            times = []
            for _ in range(RUNS):
                elapsed, count = _complete(words, cword, env, tmp)
                if expected is not None and count != expected:
                    raise RuntimeError(f"{words!r} offered {count} words, not {expected}")
                times.append(elapsed)
            medians[case] = statistics.median(times)
    worst = max(medians.values())
    return [{"metric": "completion_500_ms", "value": round(worst * 1000, 1), "unit": "ms",
             "target": "<= 600",
             "detail": {f"{case}_ms": round(t * 1000, 1) for case, t in medians.items()}
             | {"runs": RUNS, "agents": 500}}]
