"""`dotagent history NAME --json` over a big history (BENCHMARKS.md: history_1m_ms).

The history holds 1,000,000 rows spread evenly across 500 agents (2,000 runs each, over about
three months, some failed). The rows are written by direct SQL in one transaction into a
database that `History` created and migrated (so the schema and indexes are the real ones):
building them through `History.begin`/`finish` would cost two transactions per row and
measure nothing new. The value is the median wall time of the real `dotagent history
agent-250 --json` subprocess (default `-n`, 20 runs), interpreter start-up included; the
detail has the query plan (an index search, no sort), the same command for `--failed` and
without NAME, `history --stats` over all rows (which reads every row), and `python -c pass`
on the same machine for scale.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from dotagent.paths import Home  # noqa: E402
from dotagent.state.history import History  # noqa: E402

METRICS = [("history_1m_ms", "<= 200")]

BIN = Path(sys.executable).parent
ROWS = 1_000_000
AGENTS = 500
RUNS = 15
T0 = 1_780_000_000.0


def build(home: Path) -> float:
    """The big history under `home`; returns the seconds it took."""
    started = time.perf_counter()
    with History(Home(home)) as history:
        history.has_agent("agent-000")  # creates and migrates the database
        path = history.path
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    step = 90 * 86400 / ROWS

    def rows() -> Any:
        for i in range(ROWS):
            at = T0 + i * step
            failed = i % 17 == 0
            yield (f"agent-{i % AGENTS:03d}", "hourly", "default", "daemon", 1, at, at + 1.5,
                   3 if failed else 0, "failed" if failed else "ok",
                   "boom\n" if failed else None, "ab" * 32)

    conn.executemany(
        "INSERT INTO runs (agent, schedule, slug, source, attempt, started_at, finished_at, "
        "exit_code, outcome, stderr_tail, manifest_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows())
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def _wall(argv: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{argv} exited {p.returncode}: {p.stderr.decode()[-300:]}")
    return wall, p.stdout


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        home = Path(tmp) / "home"
        agents = Path(tmp) / "agents"
        agents.mkdir()
        build_s = build(home)
        env = dict(os.environ, DOTAGENT_HOME=str(home), DOTAGENT_ROOT=str(agents))
        exe = str(BIN / "dotagent")
        one, failed, every, base = [], [], [], []
        out = b""
        for _ in range(RUNS):  # interleaved, so drift hits every command alike
            wall, out = _wall([exe, "history", "agent-250", "--json"], env)
            one.append(wall)
            failed.append(_wall([exe, "history", "agent-250", "--failed", "--json"], env)[0])
            every.append(_wall([exe, "history", "--json"], env)[0])
            base.append(_wall([str(BIN / "python"), "-c", "pass"], env)[0])
        # `--stats` reads every row (percentiles need every duration): for scale only.
        stats = [_wall([exe, "history", "--stats", "--json"], env)[0] for _ in range(3)]
        runs = json.loads(out)
        assert len(runs) == 20 and {r["agent"] for r in runs} == {"agent-250"}
        with History(Home(home)) as history:
            plan = history.query_plan(agent="agent-250", limit=20)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    return [{
        "metric": "history_1m_ms", "value": ms(one), "unit": "ms", "target": "<= 200",
        "detail": {"rows": ROWS, "agents": AGENTS, "runs": RUNS, "plan": plan,
                   "min_ms": round(min(one) * 1000, 1), "max_ms": round(max(one) * 1000, 1),
                   "failed_ms": ms(failed), "all_agents_ms": ms(every),
                   "python_pass_ms": ms(base), "stats_all_ms": ms(stats),
                   "build_s": round(build_s, 1)},
    }]


if __name__ == "__main__":
    for result in run():
        print(json.dumps(result, indent=2))
