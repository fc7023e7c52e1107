"""notify_slow_dispatch_p99_ms (BENCHMARKS.md): `dispatch_p99_ms` again while every run
notifies an endpoint that answers after 10 s.

A real `dotagent daemon`, one agent on `*:*:0/0.25` running `/bin/date +%s.%N` (it prints
the wall clock as its first act), and a `[[notifiers]]` webhook entry pointing at an HTTP
server in this process that holds every request for ENDPOINT_DELAY seconds before it
answers (the entry's `timeout_seconds` is above that, so each delivery really waits).
Lateness = printed time − the window in history, as in bench_daemon.dispatch; the first
WARMUP fires are left out. Detail: how many requests reached the endpoint and how many
deliveries the bounded queue dropped (`notifier_failed` with "queue full").
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _daemonkit as kit  # noqa: E402

METRICS = [("notify_slow_dispatch_p99_ms", "<= 10")]
FIRES = int(os.environ.get("BENCH_DISPATCH_FIRES", "200"))
WARMUP = 4
ENDPOINT_DELAY = 10.0
QUARTER = 'id = "q"\ntype = "expression"\nexpression = "*:*:0/0.25"'


def _slow_server(stop: threading.Event) -> tuple[ThreadingHTTPServer, list[float]]:
    arrivals: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrivals.append(time.time())
            stop.wait(ENDPOINT_DELAY)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrivals


def measure() -> dict[str, Any]:
    stop = threading.Event()
    server, arrivals = _slow_server(stop)
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp:
            home = kit.make_home(Path(tmp))
            kit.write_agent(home, "tick", command="/bin/date", args=["+%s.%N"],
                            schedules=[QUARTER], timeout=10,
                            extra=f'\n[[notifiers]]\ndriver = "webhook"\nurl = "{url}"\n'
                                  "timeout_seconds = 15\n")
            load_before = kit.load_average()
            with kit.Daemon(home) as d:
                d.wait_for_log("scanned", 60)
                kit.wait_until(lambda: kit.finished_runs(home) >= FIRES + WARMUP,
                               timeout=FIRES * 0.25 * 3 + 30, what=f"{FIRES + WARMUP} runs")
                stop.set()  # let the held requests answer so the daemon drains quickly
            lateness = kit.lateness_ms(home, WARMUP, FIRES + WARMUP)
            events = [e["event"] for e in kit.audit_events(home)]
            dropped = sum(1 for e in events if e["event_type"] == "notifier_failed"
                          and "queue full" in e.get("reason", ""))
            skipped = sum(1 for e in events
                          if e["event_type"] in ("run_skipped_overlap", "window_missed"))
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    s = sorted(lateness)
    p99 = kit.percentile(s, 99)
    return {"metric": "notify_slow_dispatch_p99_ms", "value": round(p99, 2),
            "unit": "ms late (p99)", "target": "<= 10",
            "detail": {"p50": round(statistics.median(s), 2), "p99": round(p99, 2),
                       "max": round(s[-1], 2), "n": len(s),
                       "endpoint_requests": len(arrivals), "endpoint_delay_s": ENDPOINT_DELAY,
                       "deliveries_dropped_queue_full": dropped,
                       "skipped_or_missed_events": skipped, "load_before": load_before,
                       "load_after": kit.load_average(),
                       "how": "dispatch_p99_ms's workload with a webhook notifier whose "
                              f"endpoint answers after {ENDPOINT_DELAY:g}s; first {WARMUP} "
                              "fires left out"}}


def run() -> list[dict[str, Any]]:
    return [measure()]


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
