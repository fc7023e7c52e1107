"""`dotagent status` with 500 agents that each have history (BENCHMARKS.md: status_500_s).

Setup, in a temp home: 500 generated manifests (bench_foundation's: a cron and an interval
schedule each), and for every schedule the state a day of runs leaves — a heartbeat, the
latest window file and 20 history rows (a few failed). The state is written with the stores'
own APIs (HeartbeatStore, WindowStore, History) directly: running 20,000 real agents would
take far too long for a benchmark. One `status` first (untimed) fills the agents cache that
every later one reads, as the first command after an edit would.

Measured: the wall time of `dotagent status` and of `dotagent status --json` as real
subprocesses, median of 7 runs each, interleaved. The metric is the slower of the two.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = [("status_500_s", "<= 0.3")]

BIN = Path(sys.executable).parent
RUNS = 7
ROWS_PER_SCHEDULE = 20


def _populate(home_dir: Path, root: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_foundation import MANIFEST
    from dotagent.clock import utc_now
    from dotagent.paths import Home
    from dotagent.schedule.windows import WindowState
    from dotagent.state.heartbeat import HeartbeatStore
    from dotagent.state.history import History
    from dotagent.state.windows import WindowStore

    for i in range(500):
        d = root / f"agent-{i:03d}"
        d.mkdir(parents=True)
        (d / "agent.toml").write_text(MANIFEST.format(i=i, minute=i % 60,
                                                      interval=5 + i % 50))
    home = Home(home_dir)
    beats, windows = HeartbeatStore(home), WindowStore(home)
    now = utc_now().timestamp()
    with History(home) as history:
        for i in range(500):
            agent = f"agent-{i:03d}"
            for sid, slug, args in (("morning", "default", []), ("often", "often", ["--often"])):
                for k in range(ROWS_PER_SCHEDULE):
                    started = now - (ROWS_PER_SCHEDULE - k) * 300.0
                    rid = history.begin(agent=agent, schedule=sid, slug=slug, source="daemon",
                                        started_at=started, window=started)
                    code = 1 if (i + k) % 17 == 0 else 0
                    history.finish(rid, finished_at=started + 0.4, exit_code=code)
                last = int(now - 300)
                beats.start(agent, slug, args, last)
                beats.finish(agent, slug, args, last, last + 1, 0, 1, succeeded=True)
                from dotagent.clock import from_epoch

                windows.save(agent, slug, sid, WindowState(
                    expected_at=from_epoch(last), attempts=1, last_attempt_at=from_epoch(last),
                    last_exit_code=0))


def run() -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOTAGENT_")}
    with tempfile.TemporaryDirectory() as tmp:
        home, root = Path(tmp) / "home", Path(tmp) / "home" / "agents"
        _populate(home, root)
        run_env = dict(env, DOTAGENT_HOME=str(home), NO_COLOR="1", COLUMNS="120")
        argv = [str(BIN / "dotagent"), "status"]
        t0 = time.perf_counter()
        first = subprocess.run(argv, env=run_env, cwd=tmp, capture_output=True, text=True,
                               check=False)
        uncached = time.perf_counter() - t0
        if first.returncode != 0 or "/1000" not in first.stdout:
            raise RuntimeError(f"status did not see 1000 schedules: {first.stdout[-300:]}"
                               f"{first.stderr[-300:]}")
        plain: list[float] = []
        as_json: list[float] = []
        base: list[float] = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run([str(BIN / "python"), "-c", "pass"], env=run_env, check=False)
            base.append(time.perf_counter() - t0)
            for argv_, times in ((argv, plain), ([*argv, "--json"], as_json)):
                t0 = time.perf_counter()
                p = subprocess.run(argv_, env=run_env, cwd=tmp, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, check=False)
                times.append(time.perf_counter() - t0)
                if p.returncode != 0:
                    raise RuntimeError(p.stderr.decode()[-300:])
        med_plain, med_json = statistics.median(plain), statistics.median(as_json)
        return [{"metric": "status_500_s", "value": round(max(med_plain, med_json), 3),
                 "unit": "s", "target": "<= 0.3",
                 "detail": {"status_s": round(med_plain, 3), "status_json_s": round(med_json, 3),
                            "python_c_pass_s": round(statistics.median(base), 3),
                            "load_avg_1min": round(os.getloadavg()[0], 2),
                            "runs": RUNS, "schedules": 1000,
                            "history_rows": 1000 * ROWS_PER_SCHEDULE,
                            "first_uncached_s": round(uncached, 3)}}]


if __name__ == "__main__":
    print(run())
