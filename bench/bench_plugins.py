"""plugin_flood_rss_mb — a real daemon whose agent's `[[on_success]]` sink prints 50 MB.

The daemon caps what it keeps of a plugin's stdout at 1 MiB, kills the plugin's group at the
cap and drains the rest without keeping it, so its RSS must not follow the flood. Measured:
VmRSS of the daemon sampled every 10 ms from just before the flood agent appears until its
sink call is recorded, minus VmRSS just before (after a warm-up run through the same code
path with a well-behaved sink, so lazy imports are not counted). Two floods in a row; the
value is the larger growth.

Run alone: `.venv/bin/python bench/run.py plugins`.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemonkit import Daemon, audit_events, load_average, make_home, read_proc, write_agent

METRICS = [("plugin_flood_rss_mb", "<= 5")]
FLOOD_MB = 50


def _plugin(home_root: Path, name: str, body: str) -> None:
    d = home_root / "plugins"
    d.mkdir(exist_ok=True)
    path = d / f"dotagent-plugin-{name}"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


def _sink_calls(home: Any, agent: str) -> list[dict[str, Any]]:
    try:
        return [e["event"] for e in audit_events(home)
                if e["event"].get("event_type") == "plugin_invoked"
                and e["event"].get("agent") == agent]
    except (OSError, ValueError):
        return []


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="dotagent-bench-plugins-") as tmp:
        home = make_home(Path(tmp), "[daemon]\nshutdown_grace_seconds = 1\n")
        _plugin(home.root, "small", "import sys\nsys.stdin.read()\nprint('{\"ok\": true}')\n")
        _plugin(home.root, "flood",
                "import sys\nsys.stdin.read()\nblock = b'x' * 65536\n"
                f"for _ in range({FLOOD_MB * 16}):\n    sys.stdout.buffer.write(block)\n"
                "print('{\"ok\": true}')\n")
        sink = '\n[[on_success]]\nplugin = "{}"\n'
        schedule = ['id = "main"\ntype = "interval"\ninterval_minutes = 60']
        write_agent(home, "warm", command="/bin/echo", args=["hi"], schedules=schedule,
                    extra=sink.format("small"))
        with Daemon(home) as daemon:
            from _daemonkit import wait_until

            wait_until(lambda: bool(_sink_calls(home, "warm")), 60, "the warm-up sink call")
            time.sleep(1.0)  # let the warm-up run's bookkeeping settle
            growths: list[float] = []
            details: list[dict[str, Any]] = []
            for i in (1, 2):
                before = read_proc(daemon.pid)
                peak = [before.rss_mb]
                done = threading.Event()

                def sample(peak: list[float] = peak, done: threading.Event = done) -> None:
                    while not done.is_set():
                        try:
                            peak.append(read_proc(daemon.pid).rss_mb)
                        except OSError:
                            return
                        time.sleep(0.01)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                name = f"flood{i}"
                t0 = time.monotonic()
                write_agent(home, name, command="/bin/echo", args=["hi"],
                            schedules=schedule, extra=sink.format("flood"))
                wait_until(lambda name=name: bool(_sink_calls(home, name)), 120,
                           f"{name}'s sink call", poll=0.05)
                done.set()
                sampler.join()
                after = read_proc(daemon.pid)
                [call] = _sink_calls(home, name)
                growth = max(peak) - before.rss_mb
                growths.append(growth)
                details.append({"rss_before_mb": round(before.rss_mb, 1),
                                "rss_peak_mb": round(max(peak), 1),
                                "rss_after_mb": round(after.rss_mb, 1),
                                "samples": len(peak), "sink_ok": call["ok"],
                                "seconds": round(time.monotonic() - t0, 2)})
            capped = "printed more than 1 MiB" in daemon.log_text()
    value = max(growths)
    return [{"metric": "plugin_flood_rss_mb", "value": round(value, 2), "unit": "MB",
             "target": "<= 5",
             "detail": {"flood_mb": FLOOD_MB, "floods": details,
                        "cap_message_in_daemon_log": capped, "load": load_average()}}]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
