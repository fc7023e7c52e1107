"""The APScheduler 3.11 baselines, run as their own process (as a daemon built on it would).

    python bench/_aps.py dispatch N WARMUP   # IntervalTrigger(seconds=0.25), subprocess job
    python bench/_aps.py idle SECONDS        # 1,000 cron jobs, nothing due for hours

`dispatch` runs `/bin/date +%s.%N` the way a Python user would (`subprocess.run`, output
captured, stdin closed) and prints, as JSON, one [scheduled_instant, spawn_instant] pair per
fire (the job's `scheduled_run_time` from the executed event, and the date the child printed
as its first act). `idle` prints its own CPU seconds and RSS after SECONDS of real time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dispatch(n: int, warmup: int) -> None:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    def job() -> float:
        out = subprocess.run(["/bin/date", "+%s.%N"], capture_output=True,
                             stdin=subprocess.DEVNULL, check=True)
        return float(out.stdout)

    pairs: list[list[float]] = []
    missed = [0]
    sched = BlockingScheduler(timezone=UTC)

    def listener(event: object) -> None:
        code = getattr(event, "code", 0)
        if code == EVENT_JOB_EXECUTED:
            pairs.append([event.scheduled_run_time.timestamp(), event.retval])  # type: ignore[attr-defined]
        else:
            missed[0] += 1
        if len(pairs) >= n + warmup:
            threading.Thread(target=sched.shutdown, kwargs={"wait": False}).start()

    sched.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    # Defaults otherwise: max_instances=1 (one run per job, like ours), a thread pool of 10.
    sched.add_job(job, IntervalTrigger(seconds=0.25, start_date=start))
    sched.start()
    json.dump({"pairs": pairs[warmup:], "missed_or_failed": missed[0]}, sys.stdout)


def idle(seconds: float) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    def job() -> None:
        subprocess.run(["/bin/true"], check=False)

    sched = BackgroundScheduler(timezone=UTC)
    hour = (datetime.now(UTC) + timedelta(hours=2)).hour
    for i in range(1000):
        sched.add_job(job, CronTrigger(hour=hour, minute=i % 60, timezone=UTC),
                      id=f"agent-{i:04d}")
    sched.start()
    time.sleep(2)
    t0 = time.process_time()
    time.sleep(seconds)
    cpu = time.process_time() - t0
    json.dump({"cpu_s": cpu, "seconds": seconds, "rss_mb": _rss_mb(), "jobs": 1000},
              sys.stdout)
    sched.shutdown(wait=False)


if __name__ == "__main__":
    if sys.argv[1] == "dispatch":
        dispatch(int(sys.argv[2]), int(sys.argv[3]))
    else:
        idle(float(sys.argv[2]))
