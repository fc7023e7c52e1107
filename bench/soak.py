"""`make soak`: a real daemon with 200 agents firing every few seconds, for SOAK_SECONDS
(default 600). Not part of `make bench` or `make test`.

The agents: most print a line and succeed; every fifth fails (exit 3, a line on stderr, one
retry allowed); every tenth outlives its 1 s timeout (`sleep 30`, stopped by the daemon).
Their schedules are `*:*:OFFSET/PERIOD` with periods of 4–10 s and spread offsets, about
30 fires a second in all.

Sampled every SAMPLE seconds from /proc: the daemon's RSS, open fds, threads, and its child
processes (a zombie seen in two samples in a row has not been reaped). After a clean stop
(SIGTERM):
- RSS, first minute against last minute (medians; the per-minute series in detail);
- open fds with no agent at all, before the agents arrive and after they leave (they are
  moved into and out of the agents directory, which the daemon watches);
- zombies, and any process left in an agent's process group;
- `dotagent audit verify --json`;
- every fire accounted: `agent_run` audit events = finished history rows = "run started"
  headers in the per-agent logs, no history row left `running`; and per agent, the windows
  that came due while the daemon ran = windows run (distinct `window_at`) + windows skipped
  as overlaps + windows recorded missed (± one at each end of the run).

Prints a table and writes bench/soak_results.json (the shape of bench/results.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _daemonkit as kit  # noqa: E402
from run import verdict  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
AGENTS = int(os.environ.get("SOAK_AGENTS", "200"))
SAMPLE = 5.0
PERIODS = [4, 5, 6, 8, 10]
CONFIG = "[daemon]\nshutdown_grace_seconds = 2\n"


def _agent_kind(i: int) -> str:
    return "timeout" if i % 10 == 9 else "fail" if i % 5 == 2 else "ok"


def make_agents(home: kit.Home) -> dict[str, tuple[int, int]]:
    """The soak's agents; returns name → (offset, period) of its one schedule."""
    out = {}
    for i in range(AGENTS):
        name = f"soak-{i:03d}"
        kind = _agent_kind(i)
        period = 5 if kind == "timeout" else PERIODS[i % len(PERIODS)]
        offset = i % period
        schedule = (f'id = "often"\ntype = "expression"\n'
                    f'expression = "*:*:{offset:02d}/{period}"')
        if kind == "ok":
            args = ["-c", f"echo run of {name}"]
            timeout = 30
        elif kind == "fail":
            args = ["-c", f"echo {name} failed >&2; exit 3"]
            timeout = 30
        else:
            args = ["-c", "sleep 30"]
            timeout = 1
        kit.write_agent(home, name, command="/bin/sh", args=args, schedules=[schedule],
                        timeout=timeout,
                        extra="\n[defaults]\nmax_retries = 1\nretry_backoff_minutes = [1]\n")
        out[name] = (offset, period)
    return out


def windows_between(offset: int, period: int, start: float, end: float) -> int:
    """How many instants of `*:*:OFFSET/PERIOD` lie in (start, end]."""
    count = 0
    minute = int(start // 60) * 60
    while minute <= end:
        s = offset
        while s < 60:
            t = minute + s
            if start < t <= end:
                count += 1
            s += period
        minute += 60
    return count


def sample(pid: int, seen_zombies: dict[int, int], persistent: set[int],
           pgids: set[int], tick: int) -> dict[str, Any]:
    r = kit.read_proc(pid)
    kids = kit.children(pid)
    zombies = {p for p, state, _ in kids if state == "Z"}
    for p in zombies:
        if seen_zombies.get(p) == tick - 1:
            persistent.add(p)
        seen_zombies[p] = tick
    pgids.update(g for _, _, g in kids if g != pid)
    return {"t": r.at, "rss_mb": r.rss_mb, "fds": r.fds, "threads": r.threads,
            "cpu_s": r.cpu_s, "children": len(kids), "zombies": len(zombies)}


def _count(reason: str, pattern: str) -> int:
    m = re.search(pattern, reason)
    return int(m.group(1)) if m else 0


def account(home: kit.Home, schedules: dict[str, tuple[int, int]], start: float,
            stop: float) -> dict[str, Any]:
    rows = kit.history_rows(home)
    running = [r["id"] for r in rows if r["outcome"] == "running"]
    finished = [r for r in rows if r["outcome"] != "running"]
    outcomes = Counter(r["outcome"] for r in finished)
    agent_runs = 0
    skipped: dict[str, int] = defaultdict(int)
    missed: dict[str, int] = defaultdict(int)
    for e in kit.audit_events(home):
        ev = e["event"]
        kind = ev["event_type"]
        if kind == "agent_run":
            agent_runs += 1
        elif kind == "run_skipped_overlap":
            skipped[ev["agent"]] += _count(ev["reason"], r"^(\d+) window")
        elif kind == "window_missed":
            passed = _count(ev["reason"], r"^(\d+) window\(s\) passed")
            missed[ev["agent"]] += passed or 1 + _count(ev["reason"], r"; (\d+) earlier window")
    headers = 0
    for name in schedules:
        log = home.root / "logs" / "agents" / name / f"{name}.log"
        if log.exists():
            headers += log.read_bytes().count(b" run started \xc2\xb7 ")
    cannot_start = []
    for r in finished:
        if r["outcome"] == "could_not_start" and len(cannot_start) < 5 and r["log_path"]:
            with open(r["log_path"], "rb") as fh:
                fh.seek(r["log_start"] or 0)
                chunk = fh.read(max(0, (r["log_end"] or 0) - (r["log_start"] or 0)))
            cannot_start.append(chunk.decode(errors="replace")[-300:])
    ran: dict[str, set[float]] = defaultdict(set)
    for r in finished:
        if r["window_at"] is not None:
            ran[r["agent"]].add(r["window_at"])
    off_by: dict[str, int] = {}
    expected_total = accounted_total = 0
    for name, (offset, period) in schedules.items():
        # The window due when the daemon started counts (it is caught up or recorded).
        expected = windows_between(offset, period, start - period, stop)
        accounted = len(ran[name]) + skipped[name] + missed[name]
        expected_total += expected
        accounted_total += accounted
        if abs(expected - accounted) > 1:
            off_by[name] = accounted - expected
    return {"history_finished": len(finished), "history_running": len(running),
            "agent_run_events": agent_runs, "log_headers": headers,
            "outcomes": dict(outcomes), "retries": sum(1 for r in finished if r["attempt"] > 1),
            "windows_expected": expected_total, "windows_accounted": accounted_total,
            "windows_run": sum(len(v) for v in ran.values()),
            "windows_skipped_overlap": sum(skipped.values()),
            "windows_missed": sum(missed.values()),
            "agents_off_by_more_than_one": dict(sorted(off_by.items())[:20]),
            "agents_off_count": len(off_by), "could_not_start_logs": cannot_start}


def _scan_times(log: str, agents: int) -> tuple[float | None, float | None]:
    """When the daemon itself saw the agents arrive (its first scan of all of them) and
    leave (its last scan of none): the span whose windows it is accountable for. The
    harness's own clock would stretch it by however long reading the log took."""
    from datetime import datetime

    arrived = left = None
    for line in log.splitlines():
        try:
            rec = json.loads(line)
            text = rec["fields"]["message"]
            at = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if arrived is None and text.startswith(f"scanned {agents} agent(s)"):
            arrived = at
        elif arrived is not None and text.startswith("scanned 0 agent(s)"):
            left = at
    return arrived, left


def _move_all(src: Path, dst: Path) -> None:
    for d in sorted(src.iterdir()):
        d.rename(dst / d.name)


def _minute(samples: list[dict[str, Any]], key: str, first: bool, span: float) -> list[float]:
    t0, t1 = samples[0]["t"], samples[-1]["t"]
    if first:
        return [s[key] for s in samples if s["t"] <= t0 + span]
    return [s[key] for s in samples if s["t"] >= t1 - span]


def soak() -> list[dict[str, Any]]:
    machine = {"nproc": os.cpu_count(), "load_before": kit.load_average(),
               "date": time.strftime("%Y-%m-%d %H:%M")}
    keep = os.environ.get("SOAK_KEEP")  # a directory to leave the home in, for a post-mortem
    with (contextlib.nullcontext(tempfile.mkdtemp(prefix="soak-", dir=keep)) if keep
          else tempfile.TemporaryDirectory(prefix="soak-")) as tmp:
        home = kit.make_home(Path(tmp), CONFIG)
        schedules = make_agents(home)
        samples: list[dict[str, Any]] = []
        seen_zombies: dict[int, int] = {}
        persistent: set[int] = set()
        pgids: set[int] = set()
        parked = Path(tmp) / "parked"
        parked.mkdir()
        _move_all(home.agents, parked)
        with kit.Daemon(home) as d:
            # Idle with no agent first, then the agents arrive (seen through inotify), and at
            # the end they leave again: the idle readings before and after are comparable.
            d.wait_for_log("scanned 0 agent(s)", 120)
            time.sleep(3)
            idle_before = kit.read_proc(d.pid)
            _move_all(parked, home.agents)
            d.wait_for_log(f"scanned {AGENTS} agent(s)", 120)
            start = time.time()
            t_end = time.monotonic() + SECONDS
            tick = 0
            while time.monotonic() < t_end:
                samples.append(sample(d.pid, seen_zombies, persistent, pgids, tick))
                tick += 1
                time.sleep(min(SAMPLE, max(0.0, t_end - time.monotonic())))
            samples.append(sample(d.pid, seen_zombies, persistent, pgids, tick))
            _move_all(home.agents, parked)
            kit.wait_until(lambda: d.log_text().count("scanned 0 agent(s)") >= 2, 60,
                           "the rescan after the agents left")
            stop = time.time()
            quiet = [0]

            def settled() -> bool:
                quiet[0] = quiet[0] + 1 if not kit.children(d.pid) else 0
                return quiet[0] >= 5

            kit.wait_until(settled, 60, "the last runs to end", poll=0.5)
            time.sleep(2)
            idle_after = kit.read_proc(d.pid)
            rc = d.stop(timeout=120)
            log = d.log_text()
        arrived, left = _scan_times(log, AGENTS)
        start, stop = arrived or start, left or stop
        leftovers = kit.group_members(pgids)
        verify = subprocess.run([kit.DOTAGENT, "audit", "verify", "--json"],
                                env=home.env(), capture_output=True, text=True, check=False)
        try:
            chain = json.loads(verify.stdout)
        except ValueError:
            chain = {"unparsable": verify.stdout[-500:], "stderr": verify.stderr[-500:]}
        acc = account(home, schedules, start, stop)
    machine["load_after"] = kit.load_average()
    span = min(60.0, SECONDS / 3)
    half = samples[0]["t"] + (samples[-1]["t"] - samples[0]["t"]) / 2
    rss_mid = [x["rss_mb"] for x in samples if half - span / 2 <= x["t"] <= half + span / 2]
    rss_first = _minute(samples, "rss_mb", True, span)
    rss_last = _minute(samples, "rss_mb", False, span)
    fd_first = _minute(samples, "fds", True, span)
    fd_last = _minute(samples, "fds", False, span)
    cpu = (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] - samples[0]["t"])
    errors = [line for line in log.splitlines() if "error" in line.lower()
              or "Traceback" in line]
    common = {"seconds": SECONDS, "agents": AGENTS, "daemon_exit": rc,
              "window_s": span, **machine}

    def stats(v: list[float]) -> dict[str, float]:
        return {"min": round(min(v), 1), "median": round(statistics.median(v), 1),
                "max": round(max(v), 1)}

    def by_minute(samples: list[dict[str, Any]], key: str) -> list[float]:
        t0 = samples[0]["t"]
        groups: dict[int, list[float]] = defaultdict(list)
        for x in samples:
            groups[int((x["t"] - t0) // 60)].append(x[key])
        return [round(statistics.median(v), 1) for _, v in sorted(groups.items())]

    mismatch = (abs(acc["agent_run_events"] - acc["history_finished"]) +
                abs(acc["history_finished"] - acc["log_headers"]) + acc["history_running"])
    results = [
        {"metric": "soak_rss_growth_mb",
         "value": round(statistics.median(rss_last) - statistics.median(rss_first), 2),
         "unit": "MB (last − first minute)", "target": "<= 5",
         "detail": {"first_minute": stats(rss_first), "last_minute": stats(rss_last),
                    "growth_over_second_half_mb": round(statistics.median(rss_last) -
                                                        statistics.median(rss_mid), 2),
                    "idle_before_mb": round(idle_before.rss_mb, 1),
                    "idle_after_mb": round(idle_after.rss_mb, 1),
                    "by_minute_mb": by_minute(samples, "rss_mb"),
                    "daemon_cpu_pct": round(cpu * 100, 1), **common}},
        # Idle before the agents came against idle after they left: descriptors of runs in
        # flight come and go with the load; a leak stays.
        {"metric": "soak_fd_growth", "value": idle_after.fds - idle_before.fds,
         "unit": "fds (idle after − before)", "target": "<= 2",
         "detail": {"idle_before": idle_before.fds, "idle_after": idle_after.fds,
                    "first_minute": stats(fd_first), "last_minute": stats(fd_last),
                    "threads_max": max(s["threads"] for s in samples), **common}},
        {"metric": "soak_zombies", "value": len(persistent) + len(leftovers),
         "unit": "processes", "target": "<= 0",
         "detail": {"unreaped_zombies": sorted(persistent)[:20],
                    "left_in_agent_groups_after_stop": leftovers[:20],
                    "max_zombies_in_a_sample": max(s["zombies"] for s in samples),
                    "max_children": max(s["children"] for s in samples), **common}},
        {"metric": "soak_chain_ok", "value": 1 if verify.returncode == 0 else 0,
         "unit": "audit verify", "target": ">= 1",
         "detail": {"verify_exit": verify.returncode, "verify": chain, **common}},
        {"metric": "soak_history_mismatch", "value": mismatch, "unit": "runs",
         "target": "<= 0", "detail": {**acc, **common}},
        {"metric": "soak_unaccounted_windows", "value": acc["agents_off_count"],
         "unit": "agents off by > 1", "target": "<= 0",
         "detail": {"windows_expected": acc["windows_expected"],
                    "windows_accounted": acc["windows_accounted"],
                    "off": acc["agents_off_by_more_than_one"],
                    "daemon_log_errors": len(errors), "first_errors": errors[:10],
                    **common}},
    ]
    for m in results:
        m["verdict"] = verdict(m["value"], m["target"])
    return results


def main() -> int:
    results = soak()
    width = max(len(m["metric"]) for m in results)
    for m in results:
        print(f"{m['metric']:<{width}}  {m['value']!s:>10}  {m['unit']:<26} {m['target']:<6} "
              f"{m['verdict']}")
    out = HERE / "soak_results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"details: {out}")
    return 0 if all(m["verdict"] == "pass" for m in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
