"""`state/supervisor.json` and the boot-time orphan sweep (UPSTREAM-0.6 §12, SPEC S15.2).

While something runs, the daemon rewrites `state/supervisor.json` — a pretty-printed array of
`ProcessInfo` in upstream 0.6's shape — every 2 s, and deletes it on a clean exit. A file found at
boot therefore means the previous daemon died (`kill -9`, a crash) and may have left process
groups running with nobody holding their deadline. `sweep_orphans` kills those groups, but only
when the process behind a recorded pid is provably the one recorded — the same process group
leader, started at the recorded time, running the recorded command. A pid the OS has handed to
somebody else is never signalled: leaving an orphan alive costs memory, killing a stranger's
process costs their work.

On Linux the facts come from `/proc/<pid>/stat` and `/proc/<pid>/cmdline` (no `ps` spawned per
record); where there is no `/proc`, from `LC_ALL=C ps -o pgid=,lstart=,command= -p <pid>` as
upstream does.

Nothing here writes audit events: `sweep_orphans` returns what it did, and the daemon records
`orphan_reaped` for each reaped result.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal

from dotagent.atomicfile import dump_json, write_atomic
from dotagent.boundedread import read_bounded
from dotagent.errors import StateError
from dotagent.paths import Home
from dotagent.private import private_mkdir

__all__ = [
    "GONE",
    "KINDS",
    "UNREADABLE",
    "OrphanResult",
    "OrphanSweep",
    "ProcessFacts",
    "ProcessInfo",
    "ProcessOwner",
    "SupervisorSnapshot",
    "classify",
    "command_matches",
    "parse_ps_line",
    "pid_alive",
    "probe_process",
    "render_command",
    "same_run",
    "sweep_orphans",
]

KINDS = ("agent", "persistent_agent", "plugin_info", "plugin_validate", "preflight", "sink",
         "notify", "skill")
# `orphan_reaped` writes a kind's display form, which differs from the JSON name only here.
_KIND_DISPLAY = {"persistent_agent": "persistent"}

# The observed start may be up to 5 s earlier than the record (the record is stamped after the
# spawn returns; start times are reported in whole seconds) and at most 1 s later: a recycled
# pid only exists after the recorded process died, so impostors all sit on the later side.
START_EARLIER_TOLERANCE = 5.0
START_LATER_TOLERANCE = 1.0
DEFAULT_GRACE = 5.0
_KILL_POLLS = 20
_KILL_POLL_INTERVAL = 0.025

SkipReason = Literal["unusable_record", "ambiguous_record", "already_gone",
                     "unreadable_process", "not_group_leader", "start_time_mismatch",
                     "command_mismatch"]
Outcome = Literal["reaped", "survived", "unusable_record", "ambiguous_record", "already_gone",
                  "unreadable_process", "not_group_leader", "start_time_mismatch",
                  "command_mismatch"]
GONE: Literal["gone"] = "gone"
UNREADABLE: Literal["unreadable"] = "unreadable"


# --------------------------------------------------------------------------------------
# The snapshot records
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessOwner:
    agent: str
    schedule: str | None = None
    hook_event: str | None = None
    plugin: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agent": self.agent}
        for key in ("schedule", "hook_event", "plugin"):
            value = getattr(self, key)
            if value is not None:  # upstream leaves absent ones out
                out[key] = value
        return out


@dataclass(frozen=True)
class ProcessInfo:
    """One supervised process, as upstream 0.6's `ProcessInfo`.

    `command` is the spawn's argv joined by single spaces — for identity checks later it
    should be the executable actually started (the resolved path) followed by `argv[1:]`."""

    id: int
    pid: int
    kind: str
    owner: ProcessOwner
    label: str
    started_at: datetime  # aware
    deadline_seconds: int
    age_seconds: int = 0
    deadline_pct: int = 0
    pgid: int | None = None
    command: str = ""

    @property
    def kind_display(self) -> str:
        return _KIND_DISPLAY.get(self.kind, self.kind)

    def aged(self, now: datetime) -> ProcessInfo:
        """This record with `age_seconds` and `deadline_pct` (0–100) as of `now`."""
        age = max(0, int((now - self.started_at).total_seconds()))
        deadline = self.deadline_seconds
        pct = min(100, age * 100 // deadline) if deadline > 0 else 100
        return replace(self, age_seconds=age, deadline_pct=pct)

    def to_json(self, zone: tzinfo | None = None) -> dict[str, Any]:
        """Upstream's keys in upstream's order; `started_at` as RFC 3339 in local time (or
        `zone`) with microseconds and a `+HH:MM` offset."""
        return {
            "id": self.id,
            "pid": self.pid,
            "kind": self.kind,
            "owner": self.owner.to_json(),
            "label": self.label,
            "started_at": self.started_at.astimezone(zone).isoformat(timespec="microseconds"),
            "deadline_seconds": self.deadline_seconds,
            "age_seconds": self.age_seconds,
            "deadline_pct": self.deadline_pct,
            "pgid": self.pgid,
            "command": self.command,
        }

    @classmethod
    def from_json(cls, data: Any) -> ProcessInfo:
        """Parse one record. Tolerates upstream's defaults (`pgid` null, `command` "",
        optional owner keys); raises ValueError saying what is wrong otherwise."""
        if not isinstance(data, dict):
            raise ValueError("a record is not a JSON object")
        owner = data.get("owner")
        if not isinstance(owner, dict) or not isinstance(owner.get("agent"), str):
            raise ValueError("owner.agent is missing")
        extras: dict[str, str | None] = {}
        for key in ("schedule", "hook_event", "plugin"):
            value = owner.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"owner.{key} is not a string")
            extras[key] = value
        started = data.get("started_at")
        if not isinstance(started, str):
            raise ValueError("started_at is missing")
        try:
            started_at = datetime.fromisoformat(started)
        except ValueError:
            raise ValueError(f"started_at {started!r} is not an RFC 3339 time") from None
        if started_at.utcoffset() is None:
            raise ValueError(f"started_at {started!r} has no UTC offset")
        pgid = data.get("pgid")
        if pgid is not None and not _is_int(pgid):
            raise ValueError("pgid is not an integer")
        command = data.get("command", "")
        if not isinstance(command, str):
            raise ValueError("command is not a string")
        for key in ("kind", "label"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{key} is missing")
        return cls(
            id=_count(data, "id"), pid=_count(data, "pid"), kind=data["kind"],
            owner=ProcessOwner(agent=owner["agent"], **extras), label=data["label"],
            started_at=started_at, deadline_seconds=_count(data, "deadline_seconds"),
            age_seconds=_count(data, "age_seconds", 0),
            deadline_pct=_count(data, "deadline_pct", 0), pgid=pgid, command=command)


def render_command(argv: Sequence[str]) -> str:
    """The `command` field: argv joined by single spaces (upstream's form)."""
    return " ".join(argv)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(data: dict[str, Any], key: str, default: int | None = None) -> int:
    value: Any = data.get(key, default)
    if not _is_int(value) or value < 0:
        raise ValueError(f"{key} is not a non-negative integer")
    return int(value)


class SupervisorSnapshot:
    """The daemon's writer of `state/supervisor.json`."""

    def __init__(self, home: Home, *, zone: tzinfo | None = None) -> None:
        self.path = home.state_dir / "supervisor.json"
        self.zone = zone
        self._last: bytes | None = None

    def write(self, entries: Sequence[ProcessInfo]) -> bool:
        """Replace the file atomically (mode 0600) with `entries`; skipped (False) when the
        bytes would equal the last ones written. Raises StateError naming the file."""
        data = dump_json([e.to_json(self.zone) for e in entries]).encode(
            "utf-8", errors="backslashreplace")
        if data == self._last and self.path.exists():
            return False
        try:
            private_mkdir(self.path.parent)
            write_atomic(self.path, data, mode=0o600)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._last = data
        return True

    def delete(self) -> None:
        """Remove the file (a clean shutdown). Raises StateError if it cannot."""
        self._last = None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise StateError(f"cannot delete {self.path}: {exc.strerror or exc}") from exc

    def read(self) -> list[ProcessInfo]:
        """The recorded processes ([] when there is no file), for `status`. Raises StateError
        when the file is unreadable or not a snapshot."""
        try:
            raw = read_bounded(self.path, follow_links=False)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            items = json.loads(raw.decode("utf-8"))
            if not isinstance(items, list):
                raise ValueError("not a JSON array")
            return [ProcessInfo.from_json(item) for item in items]
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise StateError(f"{self.path} is not a supervisor snapshot: {exc}") from exc


# --------------------------------------------------------------------------------------
# What the OS says about a pid
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessFacts:
    pgid: int
    started_at: float  # epoch seconds
    command: str  # argv joined by single spaces
    # The run's own marks in the process's environment (AGENT_NAME, AGENT_SCHEDULE_ID,
    # AGENT_START_EPOCH), where /proc shows them: they survive an `exec` into another program.
    marks: tuple[tuple[str, str], ...] = ()


Probed = ProcessFacts | Literal["gone", "unreadable"]
Probe = Callable[[int], Probed]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def probe_process(pid: int) -> Probed:
    """The facts about `pid`: from /proc where there is one, else from `ps`. A zombie is gone
    (it runs nothing and its group leader's work is over)."""
    if os.path.isdir("/proc/self"):
        return _probe_proc(pid, Path("/proc"))
    return _probe_ps(pid)


def _probe_proc(pid: int, proc: Path) -> Probed:
    base = proc / str(pid)
    try:
        raw_stat = (base / "stat").read_bytes()
        raw_cmdline = (base / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return GONE
    except OSError:
        return UNREADABLE
    try:
        # `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        fields = raw_stat[raw_stat.rindex(b")") + 2:].split()
        state, pgrp, start_ticks = fields[0], int(fields[2]), int(fields[19])
        boot = _boot_time(proc)
        ticks = os.sysconf("SC_CLK_TCK")
    except (ValueError, IndexError, OSError):
        return UNREADABLE
    if state in (b"Z", b"X"):
        return GONE
    args = raw_cmdline[:-1] if raw_cmdline.endswith(b"\0") else raw_cmdline
    command = " ".join(os.fsdecode(a) for a in args.split(b"\0")) if args else ""
    return ProcessFacts(pgid=pgrp, started_at=boot + start_ticks / ticks, command=command,
                        marks=_run_marks(base / "environ"))


_MARKS = (b"AGENT_NAME", b"AGENT_SCHEDULE_ID", b"AGENT_START_EPOCH")
_ENVIRON_LIMIT = 256 * 1024


def _run_marks(path: Path) -> tuple[tuple[str, str], ...]:
    """The run marks in a process's initial environment (empty when unreadable)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_ENVIRON_LIMIT)
    except OSError:
        return ()
    found: dict[bytes, bytes] = {}
    for item in raw.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq and key in _MARKS and key not in found:
            found[key] = value
    return tuple((k.decode(), os.fsdecode(v)) for k, v in sorted(found.items()))


def same_run(record: ProcessInfo, facts: ProcessFacts) -> bool:
    """Whether `facts` show the recorded agent run by its own marks — the agent and schedule
    it was started for, and its start (within the start tolerance). An agent that `exec`s
    another program keeps them; a recycled pid running somebody else's program has none."""
    if record.kind not in ("agent", "persistent_agent"):
        return False
    marks = dict(facts.marks)
    try:
        epoch = int(marks.get("AGENT_START_EPOCH", ""))
    except ValueError:
        return False
    behind = record.started_at.timestamp() - epoch
    return (marks.get("AGENT_NAME") == record.owner.agent
            and marks.get("AGENT_SCHEDULE_ID") == record.owner.schedule
            and -START_LATER_TOLERANCE - 1 <= behind <= START_EARLIER_TOLERANCE + 1)


def _boot_time(proc: Path) -> float:
    """When the machine booted, as a wall-clock instant. For the real /proc, from the clocks
    (CLOCK_REALTIME − CLOCK_BOOTTIME, exact): /proc/stat's `btime` is cut to whole seconds,
    which puts every start up to a second early and would let a recycled pid that started
    shortly after the recorded process pass for it."""
    if proc == Path("/proc") and hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_BOOTTIME)
    for line in (proc / "stat").read_bytes().splitlines():
        if line.startswith(b"btime "):
            return int(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def _probe_ps(pid: int) -> Probed:
    import subprocess

    env = dict(os.environ, LC_ALL="C")  # lstart follows the locale otherwise
    try:
        out = subprocess.run(["ps", "-o", "pgid=,lstart=,command=", "-p", str(pid)],
                             capture_output=True, env=env, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return UNREADABLE  # no answer is not evidence that the pid is free
    if out.returncode != 0:
        return GONE
    lines = out.stdout.decode("utf-8", "surrogateescape").splitlines()
    facts = parse_ps_line(lines[0]) if lines else None
    return UNREADABLE if facts is None else facts


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def parse_ps_line(line: str, zone: tzinfo | None = None) -> ProcessFacts | None:
    """`<pgid> <weekday> <month> <day> <HH:MM:SS> <year> <command...>` (LC_ALL=C), the start in
    local time (or `zone`). None when it does not parse, or when the local time is ambiguous or
    does not exist (a DST change): then the start cannot be confirmed."""
    parts = line.split()
    if len(parts) < 6:
        return None
    try:
        pgid = int(parts[0])
        month = _MONTHS[parts[2]]
        hh, mm, ss = (int(x) for x in parts[4].split(":"))
        naive = datetime(int(parts[5]), month, int(parts[3]), hh, mm, ss)
    except (KeyError, ValueError):
        return None
    start = _local_instant(naive, zone)
    if start is None:
        return None
    return ProcessFacts(pgid=pgid, started_at=start, command=" ".join(parts[6:]))


def _local_instant(naive: datetime, zone: tzinfo | None) -> float | None:
    """The epoch of a local wall time, or None when it names no instant or two."""
    candidates = set()
    for fold in (0, 1):
        moment = naive.replace(fold=fold)
        aware = moment.astimezone() if zone is None else moment.replace(tzinfo=zone)
        # A wall time that round-trips names a real instant.
        back = aware.astimezone(zone) if zone is not None else aware.astimezone()
        if back.replace(tzinfo=None) == naive:
            candidates.add(aware.timestamp())
    return candidates.pop() if len(candidates) == 1 else None


# --------------------------------------------------------------------------------------
# Is it still the process we recorded?
# --------------------------------------------------------------------------------------
def _basename(token: str) -> str:
    return token.rsplit("/", 1)[-1]


def _looks_like_path(token: str) -> bool:
    if token.startswith("-"):
        return False
    if "/" in token:
        return True
    stem, dot, ext = token.rpartition(".")
    return bool(dot and stem and ext and ext.isascii() and ext.isalnum())


def _shebang_programs(path: str) -> frozenset[str]:
    """Basenames of the words on a script's `#!` line (empty when it is not a readable
    regular file starting with `#!`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return frozenset()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return frozenset()
        head = os.read(fd, 256)
    except OSError:
        return frozenset()
    finally:
        os.close(fd)
    if not head.startswith(b"#!"):
        return frozenset()
    line = head[2:].split(b"\n", 1)[0]
    return frozenset(_basename(os.fsdecode(w)) for w in line.split())


def command_matches(recorded: str, observed: str,
                    shebang: Callable[[str], frozenset[str]] = _shebang_programs) -> bool:
    """Whether the observed command line is the one that was recorded (UPSTREAM-0.6 §12).

    1. The observed program is one the record names: the same basename as the recorded
       program or as any recorded token (`/usr/bin/env python3 x.py` runs as `python3 x.py`);
    2. and the last recorded token that looks like a path (has a `/`, or is `stem.ext`) is a
       whole token of the observed line; with no such token, all arguments are identical.

    Ours besides: a `#!` script started by path shows up as its interpreter (plus at most one
    interpreter argument) followed by exactly the recorded line — accepted when the observed
    program is named on the script's own `#!` line."""
    rec, obs = recorded.split(), observed.split()
    if not rec or not obs:
        return False
    program = _basename(obs[0])
    if any(_basename(t) == program for t in rec):
        anchor = next((t for t in reversed(rec) if _looks_like_path(t)), None)
        if anchor is not None and anchor in obs:
            return True
        if anchor is None and rec[1:] == obs[1:]:
            return True
    n = len(rec)
    return ("/" in rec[0] and len(obs) - n in (1, 2) and obs[-n:] == rec
            and program in shebang(rec[0]))


def _precheck(record: ProcessInfo, own_pid: int) -> SkipReason | None:
    if record.pid <= 1 or record.pid == own_pid:
        return "unusable_record"
    if record.pgid is None or not record.command.strip() or record.pgid != record.pid:
        return "ambiguous_record"  # written before 0.3, or not a group leader we spawned
    return None


def classify(record: ProcessInfo, probed: Probed, own_pid: int,
             shebang: Callable[[str], frozenset[str]] = _shebang_programs
             ) -> SkipReason | Literal["reap"]:
    """What to do about one record given what the OS says now: `reap`, or why not.
    Pure apart from reading a script's `#!` line."""
    reason = _precheck(record, own_pid)
    if reason is not None:
        return reason
    if probed == GONE:
        return "already_gone"
    if probed == UNREADABLE or not isinstance(probed, ProcessFacts):
        return "unreadable_process"
    if probed.pgid != record.pgid:
        return "not_group_leader"
    behind = record.started_at.timestamp() - probed.started_at
    if not -START_LATER_TOLERANCE <= behind <= START_EARLIER_TOLERANCE:
        return "start_time_mismatch"
    if not command_matches(record.command, probed.command, shebang) \
            and not same_run(record, probed):
        return "command_mismatch"
    return "reap"


# --------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrphanResult:
    """What happened to one record. `reaped`: signalled and seen gone (audit `orphan_reaped`);
    `survived`: signalled (or tried) but still there, see `detail`; anything else: left alone,
    the value says why. `record` is None only for a record that did not parse."""

    outcome: Outcome
    record: ProcessInfo | None
    age_seconds: int = 0  # now − started_at
    detail: str = ""

    @property
    def agent(self) -> str:
        return self.record.owner.agent if self.record else ""

    @property
    def kind(self) -> str:
        return self.record.kind_display if self.record else ""

    @property
    def label(self) -> str:
        return self.record.label if self.record else ""

    @property
    def pid(self) -> int:
        return self.record.pid if self.record else 0

    @property
    def deadline_seconds(self) -> int:
        return self.record.deadline_seconds if self.record else 0

    def event_fields(self) -> dict[str, Any]:
        """The fields of `orphan_reaped`, in its order."""
        return {"agent": self.agent, "kind": self.kind, "label": self.label, "pid": self.pid,
                "age_seconds": self.age_seconds, "deadline_seconds": self.deadline_seconds}


@dataclass
class OrphanSweep:
    results: list[OrphanResult] = field(default_factory=list)
    not_run: str | None = None  # why the sweep did not look at the snapshot at all
    snapshot_error: str | None = None  # the snapshot was unusable; nothing was signalled
    corrupt_path: Path | None = None  # where the unusable snapshot was moved

    @property
    def reaped(self) -> list[OrphanResult]:
        return [r for r in self.results if r.outcome == "reaped"]


def sweep_orphans(home: Home, own_pid: int, now: datetime, *,
                  grace: float = DEFAULT_GRACE,
                  sleep: Callable[[float], None] = time.sleep,
                  probe: Probe = probe_process,
                  kill: Callable[[int, int], None] = os.killpg,
                  alive: Callable[[int], bool] = pid_alive) -> OrphanSweep:
    """Reap the process groups a crashed daemon left behind, as recorded in
    `state/supervisor.json`; call it at daemon start, after writing the pid file and before
    supervising anything. Blocks for up to `grace` seconds (plus a short poll after SIGKILL).

    - No file: nothing to do. `state/daemon.pid` naming another live process: another daemon
      owns the snapshot; nothing is touched (`not_run`).
    - A file that cannot be read or is not a snapshot: nothing is signalled; it is renamed to
      `supervisor.json.corrupt` (`snapshot_error`, `corrupt_path`).
    - Each record is classified (`classify`); the groups that pass get SIGTERM, one shared
      `grace`, are classified again, and those still the same get SIGKILL. A pid whose
      identity changed during the grace is never escalated.
    - Finally the snapshot is deleted. Never raises for a process it could not signal
      (`survived`); raises StateError only if the snapshot cannot be moved or deleted."""
    path = home.state_dir / "supervisor.json"
    report = OrphanSweep()
    if not path.exists():
        return report
    other = _daemon_pid(home)
    if other is not None and other != own_pid and alive(other):
        report.not_run = f"another daemon (pid {other}) is running"
        return report
    records = _load_records(path, report)
    if records is None:
        return report
    victims: list[ProcessInfo] = []
    for index, item in enumerate(records):
        try:
            record = ProcessInfo.from_json(item)
        except ValueError as exc:
            report.results.append(OrphanResult("unusable_record", None,
                                               detail=f"record {index}: {exc}"))
            continue
        verdict = _precheck(record, own_pid) or classify(record, probe(record.pid), own_pid)
        if verdict == "reap":
            victims.append(record)
        else:
            report.results.append(OrphanResult(verdict, record, _age(record, now)))
    signalled: list[ProcessInfo] = []
    for record in victims:
        assert record.pgid is not None
        try:
            kill(record.pgid, signal.SIGTERM)
        except ProcessLookupError:
            report.results.append(OrphanResult("already_gone", record, _age(record, now)))
        except OSError as exc:
            report.results.append(OrphanResult("survived", record, _age(record, now),
                                               f"SIGTERM failed: {exc.strerror or exc}"))
        else:
            signalled.append(record)
    if signalled:
        sleep(grace)
    for record in signalled:
        report.results.append(_escalate(record, own_pid, _age(record, now), probe, kill,
                                        sleep))
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise StateError(f"cannot delete {path}: {exc.strerror or exc}") from exc
    return report


def _age(record: ProcessInfo, now: datetime) -> int:
    return max(0, int((now - record.started_at).total_seconds()))


def _escalate(record: ProcessInfo, own_pid: int, age: int, probe: Probe,
              kill: Callable[[int, int], None], sleep: Callable[[float], None]
              ) -> OrphanResult:
    assert record.pgid is not None
    verdict = classify(record, probe(record.pid), own_pid)
    if verdict == "already_gone":
        return OrphanResult("reaped", record, age)
    if verdict != "reap":
        # Something else answers to this pid now: the one we signalled is gone, and the
        # newcomer must not get a SIGKILL.
        return OrphanResult("survived", record, age,
                            f"identity changed during the grace period: {verdict}")
    try:
        kill(record.pgid, signal.SIGKILL)
    except ProcessLookupError:
        return OrphanResult("reaped", record, age)
    except OSError as exc:
        return OrphanResult("survived", record, age, f"SIGKILL failed: {exc.strerror or exc}")
    for _ in range(_KILL_POLLS):
        if probe(record.pid) == GONE:
            return OrphanResult("reaped", record, age)
        sleep(_KILL_POLL_INTERVAL)
    return OrphanResult("survived", record, age, "still alive after SIGKILL")


def _daemon_pid(home: Home) -> int | None:
    try:
        text = read_bounded(home.state_dir / "daemon.pid", 64).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if re.fullmatch(r"[0-9]{1,10}", text) else None


def _load_records(path: Path, report: OrphanSweep) -> list[Any] | None:
    """The snapshot's array, or None after moving an unusable file aside."""
    try:
        raw = read_bounded(path, follow_links=False)
        problem = None
    except OSError as exc:
        raw, problem = b"", f"cannot read {path}: {exc.strerror or exc}"
    if problem is None:
        try:
            items = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            items, problem = None, f"{path} is not valid JSON: {exc}"
        if problem is None and not isinstance(items, list):
            problem = f"{path} is not a JSON array"
        if problem is None:
            assert isinstance(items, list)
            return items
    report.snapshot_error = problem
    corrupt = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, corrupt)
    except OSError as exc:
        raise StateError(f"cannot move {path} aside: {exc.strerror or exc}") from exc
    report.corrupt_path = corrupt
    return None

