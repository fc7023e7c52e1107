"""Shared pieces of the daemon benchmarks and the soak: a temporary home with generated agents,
a real `dotagent daemon` process, and readings of that process from /proc.

Nothing here touches the real ~/.config: every home is a temp directory and HOME points into
it. Readings come from /proc/<pid>/{stat,status,fd,task} (Linux only; a benchmark that cannot
read them says so in its result).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
DOTAGENT = str(BIN / "dotagent")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------ homes
@dataclass
class Home:
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "home"

    @property
    def agents(self) -> Path:
        return self.root / "agents"

    @property
    def history(self) -> Path:
        return self.root / "state" / "history.sqlite3"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOTAGENT_", "AGENT_"))}
        env.update(DOTAGENT_HOME=str(self.root), HOME=str(self.base / "user"), TZ="UTC",
                   PATH=os.environ.get("PATH", os.defpath))
        return env


def make_home(base: Path, config: str = "") -> Home:
    home = Home(base)
    home.agents.mkdir(parents=True)
    (base / "user").mkdir()
    home.root.chmod(0o700)
    if config:
        (home.root / "config.toml").write_text(config)
    return home


def write_agent(home: Home, name: str, *, command: str, args: list[str],
                schedules: list[str], timeout: int = 30, extra: str = "") -> None:
    """One agent; `schedules` are the bodies of `[[schedules]]` tables (TOML lines)."""
    d = home.agents / name
    d.mkdir()
    tables = "".join(f"\n[[schedules]]\n{body}\n" for body in schedules)
    (d / "agent.toml").write_text(
        f'[agent]\nname = "{name}"\ntimeout_seconds = {timeout}\n\n'
        f"[run]\ncommand = {json.dumps(command)}\nargs = {json.dumps(args)}\n{extra}\n"
        f"[security]\nallowed_commands = [{json.dumps(command)}]\n{tables}")


# ------------------------------------------------------------------------------ the daemon
class Daemon:
    """A real `dotagent daemon` in a temp home; its stderr (the daemon log) goes to a file."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.log_path = home.base / "daemon.err"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([DOTAGENT, "daemon"], env=home.env(),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=home.base)
        self.pid = self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: "
                                   f"{self.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {needle!r} in the daemon log after {timeout:.0f} s: "
                                   f"{self.log_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ /proc
@dataclass(frozen=True)
class Reading:
    at: float  # time.monotonic()
    cpu_s: float  # utime + stime of the process (all threads), children excluded
    rss_mb: float
    hwm_mb: float  # peak RSS so far
    fds: int
    threads: int
    voluntary_switches: int  # summed over the threads: how often it went to sleep


def read_proc(pid: int) -> Reading:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rfind(b")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15 (cutime/cstime not counted)
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    status = _status(pid)
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            switches += int(_status(pid, task).get("voluntary_ctxt_switches", "0"))
    return Reading(at=time.monotonic(), cpu_s=cpu,
                   rss_mb=int(status["VmRSS"].split()[0]) / 1024,
                   hwm_mb=int(status["VmHWM"].split()[0]) / 1024,
                   fds=len(os.listdir(f"/proc/{pid}/fd")), threads=int(status["Threads"]),
                   voluntary_switches=switches)


def _status(pid: int, task: str | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/status" if task is None else f"/proc/{pid}/task/{task}/status"
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def children(pid: int) -> list[tuple[int, str, int]]:
    """(pid, state, pgid) of every process whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        f = stat[stat.rfind(b")") + 2:].split()
        if int(f[1]) == pid:
            out.append((int(entry), f[0].decode(), int(f[2])))
    return out


def group_members(pgids: set[int]) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        f = stat[stat.rfind(b")") + 2:].split()
        if int(f[2]) in pgids and f[0] not in (b"Z", b"X"):
            out.append(int(entry))
    return out


# ------------------------------------------------------------------------------ history
def finished_runs(home: Home) -> int:
    """Finished attempts in history (0 while the database does not exist yet)."""
    if not home.history.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{home.history}?mode=ro", uri=True,
                                            timeout=5)) as conn:
        try:
            return int(conn.execute(
                "SELECT count(*) FROM runs WHERE outcome != 'running'").fetchone()[0])
        except sqlite3.Error:
            return 0


def history_rows(home: Home) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(f"file:{home.history}?mode=ro", uri=True,
                                            timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(poll)


def audit_events(home: Home) -> Iterator[dict[str, Any]]:
    """The entries of the live audit log (JSON lines)."""
    with open(home.audit_log, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def lateness_ms(home: Home, first: int, last: int) -> list[float]:
    """For finished runs [first, last) in history order, how late each agent started: the
    time it printed as its first act (`date +%s.%N`) minus its window, in milliseconds."""
    import re

    rows = [r for r in history_rows(home) if r["outcome"] != "running"]
    out = []
    for row in rows[first:last]:
        with open(row["log_path"], "rb") as fh:
            fh.seek(row["log_start"])
            chunk = fh.read(row["log_end"] - row["log_start"])
        m = re.search(rb"^(\d+\.\d+)$", chunk, re.M)
        if m is None:
            raise RuntimeError(f"run {row['id']}: no time in its output {chunk[:200]!r}")
        out.append((float(m.group(1)) - row["window_at"]) * 1000)
    return out
