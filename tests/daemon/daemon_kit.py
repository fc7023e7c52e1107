"""Helpers for the daemon tests: real `dotagent daemon` processes in the test's temporary home.

A `DaemonProcess` starts one (`.start()`), reads what it says (its stderr is its log for now)
and stops it with SIGTERM. Whatever happens in the test, the fixture's teardown kills every
process that is left: the daemon itself (in a session of its own, `start_new_session`),
everything in that session (agents and their children), and anything else carrying this
test's DOTAGENT_HOME in its environment (an agent that called setsid).

Waiting is always for a real event with a generous deadline (`wait_for`); nothing measures
how long something took.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

VENV_BIN = Path(sys.executable).parent
DOTAGENT = str(VENV_BIN / "dotagent")
START_DEADLINE = 30.0  # a loaded 2-core machine can be slow to import a CLI
T = TypeVar("T")


# --------------------------------------------------------------------------------------
# Waiting
# --------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something truthy (returned), or fail after
    `timeout` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# Reading what the daemon left behind
# --------------------------------------------------------------------------------------
def audit_events(home: Path) -> list[dict[str, Any]]:
    """Every complete audit line as {"severity", "ts", **event}; a torn last line is
    skipped (the daemon may be writing it)."""
    try:
        raw = (home / "audit.log").read_bytes()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for line in raw.split(b"\n")[:-1]:
        if not line.strip():
            continue
        record = json.loads(line)
        out.append({"severity": record["severity"], "ts": record["ts"], **record["event"]})
    return out


def events_of(home: Path, event_type: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in audit_events(home) if e["event_type"] == event_type
            and all(e.get(k) == v for k, v in fields.items())]


def history_rows(home: Path, agent: str | None = None) -> list[dict[str, Any]]:
    """Rows of state/history.sqlite3, oldest first, as dicts (read-only; [] when absent)."""
    import sqlite3

    path = home / "state" / "history.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM runs ORDER BY id").fetchall()
        except sqlite3.OperationalError as exc:  # not created yet
            if "no such table" in str(exc):
                return []
            raise
        found = [dict(r) for r in rows]
    finally:
        conn.close()
    return [r for r in found if agent is None or r["agent"] == agent]


def process_state(pid: int) -> str | None:
    """The /proc state letter of `pid`, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(b")") + 2:].split()[0].decode()


def gone(pid: int) -> bool:
    """No such process, or only its zombie (dead, waiting to be reaped by whoever adopted it)."""
    return process_state(pid) in (None, "Z", "X")


# --------------------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------------------
def write_agent(root: Path, name: str, *, script: str, schedule: str,
                timeout: int = 30, extra: str = "", retry: str = "") -> Path:
    """`root/<name>/agent.toml` running `root/<name>/run.sh` (a /bin/sh script, dedented);
    `schedule` is the body of its one `[[schedules]]` table (id "main")."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    run = d / "run.sh"
    run.write_text("#!/bin/sh\n" + textwrap.dedent(script).lstrip())
    run.chmod(0o755)
    body = (f'[agent]\nname = "{name}"\ntimeout_seconds = {timeout}\n{extra}\n'
            f'[run]\ncommand = "{run}"\n\n'
            f"[[schedules]]\nid = \"main\"\n{textwrap.dedent(schedule).strip()}\n{retry}\n")
    tmp = d / ".agent.toml.new"
    tmp.write_text(body)
    tmp.rename(d / "agent.toml")  # whole, so a watching daemon never sees half of it
    return d


def fake_op(daemon_env: dict[str, str], tmp_path: Path, body: str) -> Path:
    """A stand-in 1Password CLI: `op` on the daemon's PATH running the sh `body` before it
    prints `resolved`, and a private secrets.env whose one key is an `op://` reference to
    it. Returns the secrets file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    op = bin_dir / "op"
    op.write_text(f"#!/bin/sh\n{body}\nprintf resolved\n")
    op.chmod(0o755)
    daemon_env["PATH"] = f"{bin_dir}:{daemon_env['PATH']}"
    vault = tmp_path / "vault"
    vault.mkdir(exist_ok=True)
    secrets = vault / "secrets.env"
    secrets.write_text("REF=op://Private/item/field\n")
    secrets.chmod(0o600)
    daemon_env["DOTAGENT_SECRETS_FILE"] = str(secrets)
    return secrets


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------
def _stat_fields(pid: str) -> list[bytes] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2:].split()


def leftover_processes(session: int | None, home: Path) -> list[int]:
    """Processes in `session`, or with DOTAGENT_HOME=`home` in their environment."""
    marker = b"DOTAGENT_HOME=" + os.fsencode(home) + b"\0"
    me = os.getpid()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fields = _stat_fields(entry)
        if fields is None or fields[0] in (b"Z", b"X"):
            continue
        if session is not None and int(fields[3]) == session:
            found.append(int(entry))
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ + b"\0":
            found.append(int(entry))
    return found


def kill_leftovers(sessions: list[int], home: Path) -> None:
    for _ in range(50):
        pids = set()
        for session in sessions or [None]:  # type: ignore[list-item]
            pids.update(leftover_processes(session, home))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


class DaemonProcess:
    """One `dotagent daemon` subprocess (see the module docstring)."""

    def __init__(self, home: Path, env: dict[str, str], logdir: Path, cwd: Path,
                 number: int) -> None:
        self.home = home
        self.env = env
        self.cwd = cwd
        self.log_path = logdir / f"daemon-{number}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self, *args: str) -> DaemonProcess:
        """Start it; do not wait for anything."""
        log = self.log_path.open("ab")
        try:
            # stdin is a pipe that stays open: an agent inheriting it would see a pipe, not
            # /dev/null (S15.14).
            self.proc = subprocess.Popen([DOTAGENT, "daemon", *args], stdin=subprocess.PIPE,
                                         stdout=log, stderr=log, env=self.env, cwd=self.cwd,
                                         start_new_session=True)
        finally:
            log.close()
        return self

    def start(self) -> DaemonProcess:
        """Start it and wait until its first scan is done (it is then serving)."""
        self.spawn()
        self.wait_log("scanned ", START_DEADLINE)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float, count: int = 1) -> str:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None and \
                    self.log().count(text) < count:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) before "
                                     f"logging {text!r}:\n{self.log()}")
            return self.log().count(text) >= count

        wait_for(seen, timeout, f"{text!r} in the daemon log:\n{self.log()}")
        return self.log()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {timeout:g}s:\n"
                                 f"{self.log()}") from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then its exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


class DaemonFactory:
    def __init__(self, home: Path, env: dict[str, str], logdir: Path) -> None:
        self.home = home
        self.env = env
        self.logdir = logdir
        self.started: list[DaemonProcess] = []

    def __call__(self, *, cwd: Path | None = None) -> DaemonProcess:
        """A new (not yet started) daemon for the test's home."""
        d = DaemonProcess(self.home, self.env, self.logdir, cwd or self.logdir,
                          len(self.started) + 1)
        self.started.append(d)
        return d

    def cleanup(self) -> None:
        for d in self.started:
            d.close()
        kill_leftovers([d.pid for d in self.started if d.proc is not None], self.home)



def dotagent(*args: str, env: dict[str, str], cwd: Path | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOTAGENT, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
