"""CLI start-up and doctor throughput (BENCHMARKS.md: cli_cold_start_ratio, doctor_500_s)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = [("cli_cold_start_ratio", "<= 2"), ("doctor_500_s", "<= 1.5")]

BIN = Path(sys.executable).parent
RUNS = 30


def _wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - t0


def cold_start(env: dict[str, str]) -> dict[str, object]:
    ours, base = [], []
    for _ in range(RUNS):  # interleaved, so drift hits both equally
        base.append(_wall([str(BIN / "python"), "-c", "pass"], env))
        ours.append(_wall([str(BIN / "dotagent"), "--version"], env))
    o, b = statistics.median(ours), statistics.median(base)
    return {"metric": "cli_cold_start_ratio", "value": round(o / b, 2), "unit": "x python -c pass",
            "target": "<= 2", "detail": {"ours_ms": round(o * 1000, 1),
                                         "baseline_ms": round(b * 1000, 1), "runs": RUNS}}


MANIFEST = """\
[agent]
name = "agent-{i:03d}"
description = "generated for the doctor benchmark"
timeout_seconds = 600

[run]
command = "sh"
args = ["-c", "echo {i}"]

[env]
extra = {{ INDEX = "{i}" }}

[defaults]
max_retries = 2
retry_backoff_minutes = [5, 10]

[[schedules]]
id = "morning"
type = "cron"
weekdays = [1, 2, 3, 4, 5]
hours = [8, 12]
minute = {minute}

[[schedules]]
id = "often"
type = "interval"
interval_minutes = {interval}
args = ["--often"]

[security]
allowed_commands = ["sh"]
network = "deny"
"""


def doctor_500(env: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "agents"
        for i in range(500):
            d = root / f"agent-{i:03d}"
            d.mkdir(parents=True)
            (d / "agent.toml").write_text(MANIFEST.format(i=i, minute=i % 60,
                                                          interval=5 + i % 50))
        run_env = dict(env, DOTAGENT_HOME=str(Path(tmp) / "home"), DOTAGENT_ROOT=str(root))
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            p = subprocess.run([str(BIN / "dotagent"), "doctor"], env=run_env, cwd=tmp,
                               capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - t0)
            if "summary: 500 agent(s), 0 error(s)" not in p.stdout:
                raise RuntimeError(f"doctor did not see 500 clean agents: {p.stdout[-300:]}")
        med = statistics.median(times)
        return {"metric": "doctor_500_s", "value": round(med, 3), "unit": "s",
                "target": "<= 1.5", "detail": {"runs": len(times),
                                               "min_s": round(min(times), 3)}}


def run() -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOTAGENT_")}
    return [cold_start(env), doctor_500(env)]
