"""Run history (issue 8 item 6): one SQLite row per attempt in `state/history.sqlite3`.

Every attempt — whoever started it (`source`: `daemon`, `run`, `run-now`, `tick`,
`trigger-<source>`) — gets a row when it starts (`outcome = 'running'`) and is completed when it
ends. A row says which window it served, which attempt it was, how it ended, the tail of its
stderr (bounded; the caller redacts it), the manifest's sha256 and where its output sits in the
per-agent log (path + byte offsets), so `history` can show a run's own output.

Two processes (the daemon and a CLI `run`) may write at once: the database is in WAL mode, waits
up to `busy_timeout_ms` for a lock, and every write is one short `BEGIN IMMEDIATE` transaction.
A write that fails (a full disk, a lock never released) raises `StateError` naming the file and
the operation; SQLite rolls the transaction back, so the file is never left half-written.

The schema is versioned with `PRAGMA user_version`; `_MIGRATIONS[i]` takes version i to i + 1.
`sqlite3` is imported on first use only, so importing this module costs the CLI nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from dotagent.errors import StateError
from dotagent.filelock import locked
from dotagent.fserrors import state_error
from dotagent.paths import Home
from dotagent.private import open_private, private_mkdir
from dotagent.state.runstats import FAILED_OUTCOMES, ScheduleStats, schedule_stats

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "FAILED_OUTCOMES",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "STDERR_TAIL_BYTES",
    "History",
    "Outcome",
    "RunRecord",
    "ScheduleStats",
]

Outcome = Literal["ok", "failed", "timed_out", "interrupted", "preflight_failed",
                  "could_not_start", "running"]
OUTCOMES: frozenset[str] = frozenset(
    ("ok", "failed", "timed_out", "interrupted", "preflight_failed", "could_not_start",
     "running"))
_SOURCES = frozenset(("daemon", "run", "run-now", "tick"))

DEFAULT_RETENTION_DAYS = 90  # `[state] history_retention_days`; 0 keeps every row
STDERR_TAIL_BYTES = 4096
_SWEEP_BATCH = 1000  # rows per delete transaction, so a concurrent writer waits briefly

# Migration i takes the schema from user_version i to i + 1. Statements run one by one inside
# one transaction (executescript would commit on its own).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent TEXT NOT NULL,
            schedule TEXT NOT NULL,
            slug TEXT NOT NULL,
            window_at REAL,
            source TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            exit_code INTEGER,
            timed_out INTEGER NOT NULL DEFAULT 0,
            outcome TEXT NOT NULL,
            stderr_tail TEXT,
            manifest_sha256 TEXT,
            log_path TEXT,
            log_start INTEGER,
            log_end INTEGER,
            owner_pid INTEGER
        )""",
        "CREATE INDEX runs_by_start ON runs (started_at)",
        "CREATE INDEX runs_by_schedule ON runs (agent, schedule, started_at)",
        "CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running'",
    ),
    # `history NAME`: one agent's newest rows without sorting them all. The rowid (`id`)
    # ends every index entry, so `ORDER BY started_at DESC, id DESC` walks it backwards.
    ("CREATE INDEX runs_by_agent ON runs (agent, started_at)",),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_COLUMNS = ("id, agent, schedule, slug, window_at, source, attempt, started_at, finished_at, "
            "exit_code, timed_out, outcome, stderr_tail, manifest_sha256, log_path, log_start, "
            "log_end, owner_pid")

T = TypeVar("T")


@dataclass(frozen=True)
class RunRecord:
    """One attempt. Instants are epoch seconds (float); `window` is the window's expected_at,
    None for runs outside any window (`run`, `run-now`, triggers)."""

    id: int
    agent: str
    schedule: str
    slug: str
    window: float | None
    source: str
    attempt: int
    started_at: float
    finished_at: float | None
    exit_code: int | None
    timed_out: bool
    outcome: str
    stderr_tail: str | None
    manifest_sha256: str | None
    log_path: str | None
    log_start: int | None
    log_end: int | None
    owner_pid: int | None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "agent": self.agent, "schedule": self.schedule, "slug": self.slug,
            "window": self.window, "source": self.source, "attempt": self.attempt,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_seconds": self.duration_seconds, "exit_code": self.exit_code,
            "timed_out": self.timed_out, "outcome": self.outcome,
            "stderr_tail": self.stderr_tail, "manifest_sha256": self.manifest_sha256,
            "log": None if self.log_path is None else {
                "path": self.log_path, "start": self.log_start, "end": self.log_end},
        }

    @classmethod
    def _from_row(cls, row: Sequence[Any]) -> RunRecord:
        values = list(row)
        values[10] = bool(values[10])
        return cls(*values)


class History:
    """The run history of one home. Cheap to create: the database is opened (created,
    migrated) on first use. One instance may be shared by threads.

    Every method raises `StateError` (naming the file and what it was doing) when the database
    cannot be opened, read or written; a failed write leaves the file as it was. `ValueError`
    means a caller's mistake (an unknown outcome or source)."""

    def __init__(self, home: Home, *, busy_timeout_ms: int = 5000) -> None:
        self.home = home
        self.path = home.state_dir / "history.sqlite3"
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------
    def begin(self, *, agent: str, schedule: str, slug: str, source: str, started_at: float,
              attempt: int = 1, window: float | None = None,
              manifest_sha256: str | None = None, log_path: str | Path | None = None,
              log_start: int | None = None, owner_pid: int | None = None) -> int:
        """Record the start of an attempt (outcome `running`); return its run id.

        `owner_pid` is the dotagent process that will finish the row (default: this one);
        `mark_interrupted` uses it to tell a crashed owner's rows from a live one's."""
        _check_source(source)
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, got {attempt}")
        pid = os.getpid() if owner_pid is None else owner_pid
        params = (_text(agent), _text(schedule), _text(slug), window, _text(source), attempt,
                  started_at, _opt_text(manifest_sha256),
                  None if log_path is None else _text(str(log_path)), log_start, pid)

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO runs (agent, schedule, slug, window_at, source, attempt, "
                "started_at, outcome, manifest_sha256, log_path, log_start, owner_pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)", params)
            assert cur.lastrowid is not None
            return cur.lastrowid

        return self._write("record the start of a run", insert)

    def finish(self, run_id: int, *, finished_at: float, exit_code: int | None,
               timed_out: bool = False, outcome: str | None = None,
               stderr_tail: str | None = None, log_end: int | None = None) -> None:
        """Record how an attempt ended. Without `outcome`: `timed_out` if it timed out, `ok`
        for exit 0, else `failed` (pass it when the schedule's success codes say otherwise,
        or for `preflight_failed`, `could_not_start`, `interrupted`). `stderr_tail` keeps its
        last `STDERR_TAIL_BYTES` bytes. A row already marked interrupted (after a crash) is
        completed all the same: the run did end after all."""
        if outcome is None:
            outcome = "timed_out" if timed_out else "ok" if exit_code == 0 else "failed"
        if outcome not in OUTCOMES or outcome == "running":
            raise ValueError(f"not a final outcome: {outcome!r}")
        tail = None if stderr_tail is None else _tail(stderr_tail, STDERR_TAIL_BYTES)

        def update(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, timed_out = ?, outcome = ?, "
                "stderr_tail = ?, log_end = ? WHERE id = ?",
                (finished_at, exit_code, int(timed_out), outcome, tail, log_end, run_id))
            if cur.rowcount == 0:
                raise StateError(f"run {run_id} is not recorded in {self.path}")

        self._write(f"record the end of run {run_id}", update)

    def mark_interrupted(self, *, own_pid: int,
                         alive: Callable[[int], bool] | None = None) -> list[RunRecord]:
        """Mark as `interrupted` the rows still `running` whose owner is gone: a dead pid, or
        `own_pid` (a previous process that had our pid — a container's daemon restarts with
        the same one). Call it at start, before beginning runs of your own; rows of a live
        owner (a CLI `run` going on) are left alone. Returns the rows it marked.
        `alive` defaults to `dotagent.state.supervisor.pid_alive` (imported only here: the
        read commands never need it)."""
        if alive is None:
            from dotagent.state.supervisor import pid_alive

            alive = pid_alive
        is_alive = alive

        def mark(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = [RunRecord._from_row(r) for r in conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE outcome = 'running' ORDER BY id")]
            stale = [r for r in rows
                     if r.owner_pid is None or r.owner_pid == own_pid or not is_alive(r.owner_pid)]
            conn.executemany("UPDATE runs SET outcome = 'interrupted' WHERE id = ?",
                             [(r.id,) for r in stale])
            return [_replace_outcome(r, "interrupted") for r in stale]

        return self._write("mark interrupted runs", mark)

    def sweep(self, now: float, retention_days: int = DEFAULT_RETENTION_DAYS) -> int:
        """Delete finished rows that started more than `retention_days` days before `now`
        (0 disables); return how many. Deletes in small transactions."""
        if retention_days <= 0:
            return 0
        cutoff = now - retention_days * 86400

        def delete_batch(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE started_at < ? "
                "AND outcome != 'running' LIMIT ?)", (cutoff, _SWEEP_BATCH))
            return cur.rowcount

        total = 0
        while True:
            deleted = self._write("delete old runs", delete_batch)
            total += deleted
            if deleted < _SWEEP_BATCH:
                return total

    # -- reads ------------------------------------------------------------------------
    def get(self, run_id: int) -> RunRecord | None:
        if not _SQLITE_MIN <= run_id <= _SQLITE_MAX:  # no row can have it; SQLite would raise
            return None
        rows = self._read("read a run", f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return RunRecord._from_row(rows[0]) if rows else None

    def query(self, *, agent: str | None = None, schedule: str | None = None,
              limit: int | None = 20, since: float | None = None,
              failed_only: bool = False) -> list[RunRecord]:
        """Runs, newest first. `since`: started at or after (epoch seconds); `failed_only`:
        outcomes in `FAILED_OUTCOMES` plus `interrupted`; `limit=None`: all. Walks an index
        (`query_plan` shows which), never the whole table."""
        sql, params = _query_sql(agent=agent, schedule=schedule, limit=limit, since=since,
                                 failed_only=failed_only)
        return [RunRecord._from_row(r) for r in self._read("read runs", sql, params)]

    def latest_finished(self, keys: Iterable[tuple[str, str]]
                        ) -> dict[tuple[str, str], RunRecord]:
        """The newest finished attempt (any outcome but `running`) of each (agent, schedule)
        that has one: one indexed lookup per key (`runs_by_schedule`), so the cost does not
        grow with the table."""
        sql = (f"SELECT {_COLUMNS} FROM runs WHERE agent = ? AND schedule = ? "
               "AND outcome != 'running' ORDER BY started_at DESC, id DESC LIMIT 1")
        import sqlite3

        out: dict[tuple[str, str], RunRecord] = {}
        with self._lock:
            conn = self._connection()
            try:
                for agent, schedule in keys:
                    row = conn.execute(sql, (_text(agent), _text(schedule))).fetchone()
                    if row is not None:
                        out[(agent, schedule)] = RunRecord._from_row(row)
            except sqlite3.Error as exc:
                raise StateError(f"cannot read the latest runs in {self.path}: {exc}") from exc
        return out

    def query_plan(self, **query: Any) -> list[str]:
        """SQLite's `EXPLAIN QUERY PLAN` for `query(**query)`: one line per step."""
        sql, params = _query_sql(**query)
        return [str(row[-1]) for row in
                self._read("explain a query", "EXPLAIN QUERY PLAN " + sql, params)]

    def has_agent(self, agent: str) -> bool:
        """Whether any row names `agent` (one index lookup)."""
        return bool(self._read("read runs", "SELECT 1 FROM runs WHERE agent = ? LIMIT 1",
                               (_text(agent),)))

    def schedules_of(self, agent: str) -> list[str]:
        """The schedule ids `agent`'s rows name, sorted."""
        return [str(r[0]) for r in self._read(
            "read runs", "SELECT DISTINCT schedule FROM runs WHERE agent = ? ORDER BY 1",
            (_text(agent),))]

    def stats(self, *, agent: str | None = None, schedule: str | None = None,
              since: float | None = None) -> list[ScheduleStats]:
        """Per (agent, schedule): counts, success rate, p50/p95 duration; sorted by name."""
        sql = "SELECT agent, schedule, outcome, started_at, finished_at FROM runs"
        where, params = _filters(agent=agent, schedule=schedule, since=since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        groups: dict[tuple[str, str], list[tuple[str, float, float | None]]] = {}
        for a, s, outcome, started, finished in self._read("compute run statistics", sql,
                                                            params):
            groups.setdefault((a, s), []).append((outcome, started, finished))
        return [schedule_stats(a, s, rows) for (a, s), rows in sorted(groups.items())]

    # -- plumbing ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """The open connection (opened, created and migrated on first use)."""
        if self._conn is not None:
            return self._conn
        import sqlite3

        try:
            private_mkdir(self.home.state_dir)
            # Created here so that it is private from the start (0600 whatever the umask, and
            # never through a symlink); SQLite gives its -wal and -shm files the same mode.
            os.close(open_private(self.path, os.O_RDWR))
        except OSError as exc:
            raise state_error("open", self.path, exc) from exc
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            # Switching a new database to WAL and migrating it take locks for which SQLite
            # may answer "database is locked" at once, without waiting on busy_timeout, when
            # another process opens the same file at the same moment. A flock on a sibling
            # file (never deleted) serialises opening; every later write waits as usual.
            with locked(self.path.with_name(self.path.name + ".lock")):
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: never corrupt
                self._migrate(conn)
        except OSError as exc:
            conn.close()
            raise StateError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            hint = ""
            if "not a database" in str(exc) or "malformed" in str(exc):
                hint = "; move it aside and dotagent starts a new one"
            raise StateError(f"cannot open {self.path}: {exc}{hint}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StateError(f"{self.path} was written by a newer dotagent (schema version "
                             f"{version}; this one knows up to {SCHEMA_VERSION})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write(self, operation: str, body: Callable[[sqlite3.Connection], T]) -> T:
        import sqlite3

        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):  # already rolled back
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StateError(f"cannot {operation} in {self.path}: {exc}") from exc
            return result

    def _read(self, operation: str, sql: str,
              params: Iterable[Any] = ()) -> list[Sequence[Any]]:
        import sqlite3

        with self._lock:
            conn = self._connection()
            try:
                return list(conn.execute(sql, tuple(params)))
            except sqlite3.Error as exc:
                raise StateError(f"cannot {operation} in {self.path}: {exc}") from exc


# -- helpers ------------------------------------------------------------------------------
def _filters(*, agent: str | None, schedule: str | None,
             since: float | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if agent is not None:
        where.append("agent = ?")
        params.append(_text(agent))
    if schedule is not None:
        where.append("schedule = ?")
        params.append(_text(schedule))
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    return where, params


# The range of an SQLite INTEGER: a Python int outside it cannot even be bound as a parameter.
_SQLITE_MIN, _SQLITE_MAX = -(2 ** 63), 2 ** 63 - 1


def _query_sql(*, agent: str | None = None, schedule: str | None = None,
               limit: int | None = 20, since: float | None = None,
               failed_only: bool = False) -> tuple[str, list[Any]]:
    where, params = _filters(agent=agent, schedule=schedule, since=since)
    if failed_only:
        failed = sorted(FAILED_OUTCOMES | {"interrupted"})
        where.append(f"outcome IN ({', '.join('?' * len(failed))})")
        params.extend(failed)
    sql = f"SELECT {_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(min(max(0, limit), _SQLITE_MAX))  # "at most N": more than exist is all
    return sql, params


def _check_source(source: str) -> None:
    if source in _SOURCES:
        return
    if source.startswith("trigger-") and len(source) > len("trigger-"):
        return
    raise ValueError(f"unknown run source {source!r} (daemon, run, run-now, tick, "
                     "trigger-<source>)")


def _text(value: str) -> str:
    """Any str as valid UTF-8 (a path from a non-UTF-8 directory holds lone surrogates,
    which SQLite cannot store)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _opt_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


def _tail(text: str, limit: int) -> str:
    """The last `limit` bytes of `text` in UTF-8, cut at a character boundary."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[-limit:].decode("utf-8", "ignore")


def _replace_outcome(record: RunRecord, outcome: str) -> RunRecord:
    values = dict(record.__dict__)
    values["outcome"] = outcome
    return RunRecord(**values)
