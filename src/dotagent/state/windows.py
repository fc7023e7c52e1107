"""Window files (SPEC S7, UPSTREAM-0.6 §8): `state/windows/<agent>-<slug>-<YYYY-MM-DD-HHMM>.json`.

One file per window the daemon acted on, named by the window's `expected_at` in local time,
holding upstream's shape in upstream's key order:

    agent, schedule_id, expected_at (epoch), attempts, last_attempt_at|null,
    last_attempt_exit_code|null, last_attempt_stderr|null, given_up, given_up_at|null

then, only when they are not their default, two keys of ours that upstream's reader ignores:
`expected_at_us` (the microseconds of a sub-second window; upstream's `expected_at` is whole
seconds) and `missed` (true: the window was recorded as missed, never run). A file we write for
an ordinary window is therefore byte-for-byte what upstream writes.

Writers hold an exclusive flock on the sibling `<stem>.lock` and replace the file atomically
(temp file, fsync, rename). The retention sweep deletes old files and their locks, so locks are
taken with `filelock.locked_deletable`, which notices a lock deleted while it waited.

Reading never raises: a missing file is absent; a file that is unreadable or not a window
(garbage, a truncated write by another tool) is absent too, and reported through `on_problem`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotagent.atomicfile import dump_json, write_atomic
from dotagent.boundedread import read_bounded
from dotagent.errors import StateError
from dotagent.filelock import locked_deletable
from dotagent.paths import Home, safe_component
from dotagent.private import private_mkdir
from dotagent.schedule.windows import ScheduleState, WindowState

if TYPE_CHECKING:
    from dotagent.state.heartbeat import Heartbeat, HeartbeatStore

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "ProblemReporter",
    "WindowRecord",
    "WindowStore",
    "WindowSweep",
    "schedule_state",
    "state_of",
]

DEFAULT_RETENTION_DAYS = 30  # `[state] window_retention_days`; 0 keeps every file

ProblemReporter = Callable[[Path, str], None]

log = logging.getLogger("dotagent.state")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last instant a datetime can show
_I32 = (-(2**31), 2**31 - 1)
_U32_MAX = 2**32 - 1
_STAMP = "%Y-%m-%d-%H%M"
_NAME = re.compile(r"(?P<prefix>.+)-(?P<stamp>\d{4}-\d\d-\d\d-\d{4})\.(?P<ext>json|lock)")
# Temp files of an interrupted write: ours (`.<name>.<random>.tmp`) and upstream's
# (`<name>.json.tmp`).
_TMP = re.compile(r"(\..+\.json\..+|.+\.json)\.tmp")
# Names are minutes of local time, so a DST fall-back hour (or a change of zone) can make an
# older window's name sort after a newer one's; `latest` compares contents within this span.
_NAME_SKEW = timedelta(hours=2)


def _warn(path: Path, message: str) -> None:
    log.warning("%s: %s", path, message)


@dataclass(frozen=True)
class WindowRecord:
    """A window file: the pure `WindowState` plus what only the file keeps."""

    agent: str
    schedule_id: str
    state: WindowState
    last_attempt_stderr: str | None = None
    given_up_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """Upstream's keys in upstream's order, then ours (only when not their default)."""
        seconds, micros = _split(self.state.expected_at)
        out: dict[str, Any] = {
            "agent": self.agent,
            "schedule_id": self.schedule_id,
            "expected_at": seconds,
            "attempts": self.state.attempts,
            "last_attempt_at": _epoch_or_none(self.state.last_attempt_at),
            "last_attempt_exit_code": self.state.last_exit_code,
            "last_attempt_stderr": self.last_attempt_stderr,
            "given_up": self.state.given_up,
            "given_up_at": _epoch_or_none(self.given_up_at),
        }
        if micros:
            out["expected_at_us"] = micros
        if self.state.missed:
            out["missed"] = True
        return out


@dataclass
class WindowSweep:
    """What one retention pass did."""

    deleted: list[Path] = field(default_factory=list)  # window files (their locks went too)
    skipped_locked: list[Path] = field(default_factory=list)  # held by a writer: next pass
    kept_latest: list[Path] = field(default_factory=list)  # old, but a schedule's newest
    removed_other: list[Path] = field(default_factory=list)  # stray locks, stale temp files
    errors: list[tuple[Path, str]] = field(default_factory=list)


class WindowStore:
    """Window files of one home.

    `zone` is the local zone used for file names (None: the C library's local time, the zone
    heartbeats and the audit log use). `on_problem(path, message)` hears about every file that
    could not be used as it stands; the default logs a warning on the `dotagent.state` logger.
    """

    def __init__(self, home: Home, *, zone: tzinfo | None = None,
                 on_problem: ProblemReporter | None = None) -> None:
        self.home = home
        self.zone = zone
        self.on_problem: ProblemReporter = _warn if on_problem is None else on_problem

    # -- names ------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return self.home.join("state", "windows")

    def path(self, agent: str, slug: str, expected_at: datetime) -> Path:
        """The file of one window. Raises UnsafeNameError for a name that is not one safe
        path component (nothing outside `state/windows` is ever named)."""
        _require_aware(expected_at, "expected_at")
        stamp = expected_at.astimezone(self.zone).strftime(_STAMP)
        name = f"{safe_component(agent, 'agent name')}-{slug}-{stamp}.json"
        return self.home.join("state", "windows", name)

    @staticmethod
    def lock_path(path: Path) -> Path:
        return path.with_name(path.name.removesuffix(".json") + ".lock")

    # -- reading ------------------------------------------------------------------------
    def read(self, agent: str, slug: str, expected_at: datetime) -> WindowRecord | None:
        """The record of exactly this window, or None.

        None when there is no file, when the file is unusable (reported), or when it holds
        another window that shares the name (two windows in one minute; the repeated hour of
        a DST change; another agent whose name and slug join to the same prefix)."""
        path = self.path(agent, slug, expected_at)
        record = self._read_file(path)
        if record is None or record.agent != agent:
            return None
        if _split(record.state.expected_at) != _split(expected_at):
            return None
        return record

    def load(self, agent: str, slug: str, expected_at: datetime) -> WindowState | None:
        """`read`, as the pure scheduler's `WindowState`."""
        record = self.read(agent, slug, expected_at)
        return None if record is None else record.state

    def latest(self, agent: str, slug: str) -> WindowRecord | None:
        """The most recent window recorded for one schedule (by `expected_at`), or None.

        This is what the daemon puts in `ScheduleState.window` after a restart."""
        return self.latest_many([(agent, slug)])[(agent, slug)]

    def latest_many(self, keys: Iterable[tuple[str, str]]
                    ) -> dict[tuple[str, str], WindowRecord | None]:
        """`latest` for many (agent, slug) pairs with one directory scan."""
        wanted = {(agent, slug): f"{safe_component(agent, 'agent name')}-{slug}"
                  for agent, slug in keys}
        result: dict[tuple[str, str], WindowRecord | None] = dict.fromkeys(wanted)
        by_prefix: dict[str, list[tuple[str, str]]] = {}
        for name, prefix, stamp, ext in self._scan():
            if ext == "json":
                by_prefix.setdefault(prefix, []).append((stamp, name))
        directory = self.directory  # checked once (it resolves the path), not per file
        for key, prefix in wanted.items():
            candidates = sorted(by_prefix.get(prefix, ()), reverse=True)
            result[key] = self._newest(key[0], candidates, directory)
        return result

    def _newest(self, agent: str, candidates: list[tuple[str, str]],
                directory: Path) -> WindowRecord | None:
        best: WindowRecord | None = None
        horizon: datetime | None = None
        for stamp, name in candidates:
            moment = _parse_stamp(stamp)
            if moment is None:
                continue
            if horizon is not None and moment < horizon:
                break
            record = self._read_file(directory / name)
            if record is None or record.agent != agent:
                continue
            if best is None:
                horizon = moment - _NAME_SKEW
            if best is None or record.state.expected_at > best.state.expected_at:
                best = record
        return best

    def _read_file(self, path: Path) -> WindowRecord | None:
        try:
            raw = read_bounded(path, follow_links=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.on_problem(path, f"cannot read window file: {exc.strerror or exc}; "
                                  "treated as absent")
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self.on_problem(path, f"not a window file (invalid JSON: {exc}); treated as absent")
            return None
        if not isinstance(data, dict):
            self.on_problem(path, "not a window file (not a JSON object); treated as absent")
            return None
        return _parse(data, lambda message: self.on_problem(path, message))

    # -- writing ------------------------------------------------------------------------
    def save(self, agent: str, slug: str, schedule_id: str, state: WindowState, *,
             stderr: str | None = None, given_up_at: datetime | None = None) -> WindowRecord:
        """Write one window's file (under its lock, atomically, mode 0600).

        `stderr` is the last attempt's stderr tail, already bounded and redacted by the
        caller. Raises StateError naming the file when it cannot be written; the previous
        file, if any, is then left as it was."""
        record = WindowRecord(agent=agent, schedule_id=schedule_id, state=state,
                              last_attempt_stderr=stderr, given_up_at=given_up_at)
        path = self.path(agent, slug, state.expected_at)
        data = dump_json(record.to_json()).encode("utf-8", errors="backslashreplace")
        try:
            self._make_dirs()
            with locked_deletable(self.lock_path(path)):
                write_atomic(path, data, mode=0o600)
        except OSError as exc:
            raise StateError(f"cannot write window file {path}: {exc.strerror or exc}") from exc
        return record

    def _make_dirs(self) -> None:
        for directory in (self.home.state_dir, self.directory):
            private_mkdir(directory)

    # -- retention ----------------------------------------------------------------------
    def sweep(self, now: datetime, retention_days: int = DEFAULT_RETENTION_DAYS) -> WindowSweep:
        """Delete window files (and their locks) not written for more than `retention_days`
        days; 0 disables the sweep. Never raises for a file it cannot delete (listed in
        `errors`).

        A file whose lock is held by a writer is skipped until the next pass. The newest file
        of each schedule is kept whatever its age: it is the schedule's state after a restart
        (a yearly schedule's only window)."""
        report = WindowSweep()
        if retention_days <= 0:
            return report
        _require_aware(now, "now")
        cutoff = now.timestamp() - retention_days * 86400
        newest: dict[str, str] = {}
        windows: list[tuple[str, str, str]] = []
        locks: set[str] = set()
        try:
            entries = self._scan(tmp=True)
        except OSError as exc:
            report.errors.append((self.directory, exc.strerror or str(exc)))
            return report
        for name, prefix, stamp, ext in entries:
            if ext == "tmp":
                self._remove_if_old(self.directory / name, cutoff, report)
            elif ext == "lock":
                locks.add(name)
            else:
                windows.append((name, prefix, stamp))
                if stamp > newest.get(prefix, ""):
                    newest[prefix] = stamp
        for name, prefix, stamp in windows:
            path = self.directory / name
            lock = self.lock_path(path)
            locks.discard(lock.name)
            if stamp == newest[prefix]:
                if _older_than(path, cutoff):
                    report.kept_latest.append(path)
                continue
            if not _older_than(path, cutoff):
                continue
            try:
                with locked_deletable(lock, wait=False) as held:
                    if not held:
                        report.skipped_locked.append(path)
                        continue
                    if not _older_than(path, cutoff):  # rewritten while we looked
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    report.deleted.append(path)
                    lock.unlink()
            except OSError as exc:
                report.errors.append((path, exc.strerror or str(exc)))
        for name in sorted(locks):  # a lock whose window file is gone
            lock = self.directory / name
            if not _older_than(lock, cutoff):
                continue
            try:
                with locked_deletable(lock, wait=False) as held:
                    if held and _older_than(lock, cutoff):
                        lock.unlink()
                        report.removed_other.append(lock)
            except OSError as exc:
                report.errors.append((lock, exc.strerror or str(exc)))
        return report

    def _remove_if_old(self, path: Path, cutoff: float, report: WindowSweep) -> None:
        if not _older_than(path, cutoff):
            return
        try:
            path.unlink()
            report.removed_other.append(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            report.errors.append((path, exc.strerror or str(exc)))

    def _scan(self, tmp: bool = False) -> list[tuple[str, str, str, str]]:
        """(name, prefix, stamp, ext) of the window files, locks and (with `tmp`) temp files
        in the directory. A missing directory holds nothing."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found: list[tuple[str, str, str, str]] = []
        for name in names:
            m = _NAME.fullmatch(name)
            if m is not None:
                found.append((name, m["prefix"], m["stamp"], m["ext"]))
            elif tmp and _TMP.fullmatch(name):
                found.append((name, "", "", "tmp"))
        return found


# -- parsing ------------------------------------------------------------------------------
def _parse(data: dict[str, Any], report: Callable[[str], None]) -> WindowRecord | None:
    """A record from a window file's object; None (reported) when it names no window."""
    seconds: Any = data.get("expected_at")
    if not _is_epoch(seconds):
        report(f"not a window file (expected_at is {_shown(seconds)}, not an epoch); "
               "treated as absent")
        return None

    def value(key: str, check: Callable[[Any], bool], default: Any, what: str) -> Any:
        if key not in data:
            return default
        v = data[key]
        if v is None and default is None:
            return None
        if check(v):
            return v
        report(f"{key} is {_shown(v)}, not {what}; read as {json.dumps(default)}")
        return default

    agent = value("agent", lambda v: isinstance(v, str), "", "a string")
    schedule_id = value("schedule_id", lambda v: isinstance(v, str), "", "a string")
    attempts = value("attempts", lambda v: _is_int(v) and 0 <= v <= _U32_MAX, 0, "a count")
    last_at = value("last_attempt_at", _is_epoch, None, "an epoch")
    exit_code = value("last_attempt_exit_code",
                      lambda v: _is_int(v) and _I32[0] <= v <= _I32[1], None, "an exit code")
    stderr = value("last_attempt_stderr", lambda v: isinstance(v, str), None, "a string")
    given_up = value("given_up", lambda v: isinstance(v, bool), False, "true or false")
    given_up_at = value("given_up_at", _is_epoch, None, "an epoch")
    micros = value("expected_at_us", lambda v: _is_int(v) and 0 <= v < 1_000_000, 0,
                   "microseconds")
    missed = value("missed", lambda v: isinstance(v, bool), False, "true or false")
    state = WindowState(
        expected_at=_from_epoch(seconds, micros),
        attempts=attempts,
        last_attempt_at=None if last_at is None else _from_epoch(last_at),
        last_exit_code=exit_code,
        given_up=given_up,
        missed=missed,
    )
    return WindowRecord(agent=agent, schedule_id=schedule_id, state=state,
                        last_attempt_stderr=stderr,
                        given_up_at=None if given_up_at is None else _from_epoch(given_up_at))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_epoch(v: Any) -> bool:
    return _is_int(v) and 0 <= v <= _MAX_EPOCH


def _shown(v: Any) -> str:
    text = "missing" if v is None else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {moment!r}")


def _split(moment: datetime) -> tuple[int, int]:
    """(whole epoch seconds, microseconds) of an aware datetime, flooring."""
    _require_aware(moment, "a window instant")
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    seconds, rest = divmod(micros, 1_000_000)
    return seconds, rest


def _from_epoch(seconds: int, micros: int = 0) -> datetime:
    return _EPOCH + timedelta(seconds=seconds, microseconds=micros)


def _epoch_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else _split(moment)[0]


def _parse_stamp(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp, _STAMP)
    except ValueError:
        return None


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except OSError:
        return False


def schedule_state(heartbeats: HeartbeatStore, record: WindowRecord | None, agent: str,
                   slug: str, *, window: WindowState | None = None) -> ScheduleState:
    """What the scheduler (and the health judge) decide from: the heartbeat's last start and
    last success, and the latest window (`record`, or `window` when the caller has it).
    The daemon, `tick` and `dotagent.api` (status, inspect, next) all build it here."""
    if window is None and record is not None:
        window = record.state
    return state_of(heartbeats.read(agent, slug), window)


def state_of(beat: Heartbeat | None, window: WindowState | None) -> ScheduleState:
    """`schedule_state` from a heartbeat already read."""
    from dotagent.clock import from_epoch

    last_start = from_epoch(beat.started_at) if beat and beat.started_at else None
    last_success = (from_epoch(beat.last_success_at)
                    if beat and beat.last_success_at is not None else None)
    return ScheduleState(last_start=last_start, last_success=last_success, window=window)
