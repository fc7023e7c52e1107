"""Run history in SQLite: rows per attempt, two writers at once, a full disk, retention."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dotagent.errors import StateError
from dotagent.paths import Home
from dotagent.state.history import SCHEMA_VERSION, STDERR_TAIL_BYTES, History
from tmpfs import fill, small_tmpfs

from conftest import REPO

T0 = 1_790_000_000.0
DAY = 86400.0


def history(root: Path, **kw: int) -> History:
    return History(Home(root), **kw)


def test_a_run_from_start_to_end(tmp_path: Path) -> None:
    with history(tmp_path) as h:
        run_id = h.begin(agent="report", schedule="daily", slug="default", source="daemon",
                         started_at=T0, attempt=2, window=T0 - 0.75, manifest_sha256="ab" * 32,
                         log_path=tmp_path / "logs/report.log", log_start=120)
        running = h.get(run_id)
        assert running is not None and running.outcome == "running"
        assert running.finished_at is None and running.duration_seconds is None
        h.finish(run_id, finished_at=T0 + 2.5, exit_code=3, stderr_tail="bad\n",
                 log_end=480)
        done = h.get(run_id)
    assert done is not None
    assert (done.agent, done.schedule, done.slug, done.source, done.attempt) == (
        "report", "daily", "default", "daemon", 2)
    assert (done.window, done.started_at, done.finished_at) == (T0 - 0.75, T0, T0 + 2.5)
    assert (done.exit_code, done.timed_out, done.outcome, done.stderr_tail) == (
        3, False, "failed", "bad\n")
    assert done.duration_seconds == 2.5
    assert done.to_json()["log"] == {"path": str(tmp_path / "logs/report.log"),
                                     "start": 120, "end": 480}
    db = tmp_path / "state/history.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for side in ("-wal", "-shm"):
        side_file = db.with_name(db.name + side)
        assert not side_file.exists() or stat.S_IMODE(side_file.stat().st_mode) == 0o600
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    check.close()


def test_outcomes_and_the_stderr_bound(tmp_path: Path) -> None:
    with history(tmp_path) as h:
        def ended(**kw: object) -> str:
            run_id = h.begin(agent="a", schedule="s", slug="default", source="run",
                             started_at=T0)
            h.finish(run_id, finished_at=T0 + 1, **kw)  # type: ignore[arg-type]
            record = h.get(run_id)
            assert record is not None
            return record.outcome

        assert ended(exit_code=0) == "ok"
        assert ended(exit_code=1) == "failed"
        assert ended(exit_code=124, timed_out=True) == "timed_out"
        assert ended(exit_code=3, outcome="ok") == "ok"  # a success_exit_codes policy
        assert ended(exit_code=None, outcome="preflight_failed") == "preflight_failed"
        with pytest.raises(ValueError):
            ended(exit_code=0, outcome="running")
        with pytest.raises(ValueError):
            h.begin(agent="a", schedule="s", slug="x", source="cron", started_at=T0)
        with pytest.raises(StateError, match="run 999 is not recorded"):
            h.finish(999, finished_at=T0, exit_code=0)
        run_id = h.begin(agent="a", schedule="s", slug="default", source="trigger-mcp",
                         started_at=T0)
        h.finish(run_id, finished_at=T0, exit_code=1, stderr_tail="é" * 5000 + "end")
        record = h.get(run_id)
    assert record is not None and record.stderr_tail is not None
    assert len(record.stderr_tail.encode()) <= STDERR_TAIL_BYTES
    assert record.stderr_tail.endswith("end") and set(record.stderr_tail[:-3]) == {"é"}


def test_query_newest_first_with_filters(tmp_path: Path) -> None:
    with history(tmp_path) as h:
        plan = [("a", "s1", 0, 0), ("a", "s1", 10, 1), ("a", "s2", 20, 0), ("b", "s1", 30, 0),
                ("a", "s1", 40, 124), ("b", "s1", 50, None)]
        ids = []
        for agent, schedule, offset, code in plan:
            run_id = h.begin(agent=agent, schedule=schedule, slug="default", source="daemon",
                             started_at=T0 + offset)
            ids.append(run_id)
            if code is not None:
                h.finish(run_id, finished_at=T0 + offset + 1, exit_code=code,
                         timed_out=code == 124)

        def q(**kw: object) -> list[int]:
            return [r.id for r in h.query(**kw)]  # type: ignore[arg-type]

        assert q() == ids[::-1]
        assert q(limit=2) == [ids[5], ids[4]]
        assert q(agent="a") == [ids[4], ids[2], ids[1], ids[0]]
        assert q(agent="a", schedule="s1") == [ids[4], ids[1], ids[0]]
        assert q(since=T0 + 20) == [ids[5], ids[4], ids[3], ids[2]]
        assert q(failed_only=True) == [ids[4], ids[1]]
        assert q(agent="nobody") == []
        assert len(h.query(limit=None)) == 6


def test_stats_per_schedule(tmp_path: Path) -> None:
    with history(tmp_path) as h:
        for i in range(20):  # durations 1..20 s; every fifth attempt fails
            run_id = h.begin(agent="a", schedule="s", slug="default", source="daemon",
                             started_at=T0 + 100 * i)
            h.finish(run_id, finished_at=T0 + 100 * i + i + 1, exit_code=1 if i % 5 == 4 else 0)
        h.begin(agent="a", schedule="s", slug="default", source="daemon", started_at=T0 + 9e3)
        h.begin(agent="b", schedule="x", slug="default", source="run", started_at=T0)
        stats = {(s.agent, s.schedule): s for s in h.stats()}
    a = stats[("a", "s")]
    assert (a.runs, a.ok, a.failed, a.running, a.interrupted) == (21, 16, 4, 1, 0)
    assert a.success_rate == 0.8 and a.p50_seconds == 10 and a.p95_seconds == 19
    b = stats[("b", "x")]
    assert (b.runs, b.success_rate, b.p50_seconds) == (1, None, None)


def test_mark_interrupted_only_takes_rows_of_owners_that_are_gone(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen(["sleep", "60"])
    try:
        with history(tmp_path) as h:
            def start(owner: int) -> int:
                return h.begin(agent="a", schedule="s", slug="default", source="daemon",
                               started_at=T0, owner_pid=owner)

            crashed, ours_before, cli_run = start(dead_pid), start(4242), start(live.pid)
            marked = h.mark_interrupted(own_pid=4242)
            assert sorted(r.id for r in marked) == sorted([crashed, ours_before])
            assert all(r.outcome == "interrupted" for r in marked)
            still = h.get(cli_run)
            assert still is not None and still.outcome == "running"
            assert h.mark_interrupted(own_pid=4242) == []
            h.finish(crashed, finished_at=T0 + 5, exit_code=0)  # it did end after all
            finished = h.get(crashed)
            assert finished is not None and finished.outcome == "ok"
    finally:
        live.kill()
        live.wait()


def test_sweep_deletes_old_finished_rows_in_batches(tmp_path: Path) -> None:
    with history(tmp_path) as h:
        conn = h._connection()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO runs (agent, schedule, slug, source, attempt, started_at, "
            "finished_at, outcome) VALUES ('a', 's', 'default', 'daemon', 1, ?, ?, 'ok')",
            [(T0 - 100 * DAY + i, T0 - 100 * DAY + i + 1) for i in range(2500)])
        conn.execute("COMMIT")
        stuck = h.begin(agent="a", schedule="s", slug="default", source="daemon",
                        started_at=T0 - 100 * DAY)
        recent = h.begin(agent="a", schedule="s", slug="default", source="daemon",
                         started_at=T0 - 10 * DAY)
        h.finish(recent, finished_at=T0 - 10 * DAY + 1, exit_code=0)
        assert h.sweep(T0, retention_days=0) == 0
        assert h.sweep(T0, retention_days=90) == 2500
        assert sorted(r.id for r in h.query(limit=None)) == [stuck, recent]


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    """The daemon and a CLI `run` write the same database: nothing is lost or refused."""
    script = textwrap.dedent("""
        import sys
        import time
        from pathlib import Path
        from dotagent.paths import Home
        from dotagent.state.history import History
        h = History(Home(Path(sys.argv[1])))
        sys.stdin.readline()  # start together
        ids = []
        for i in range(300):
            run_id = h.begin(agent=sys.argv[2], schedule="s", slug="default",
                             source="daemon", started_at=1.0 * i)
            h.finish(run_id, finished_at=1.0 * i + 0.5, exit_code=0, stderr_tail="x" * 500)
            ids.append(run_id)
            deadline = time.monotonic() + 30
            while i == 0 and not h.query(agent=sys.argv[3]):  # both are writing now
                assert time.monotonic() < deadline
        print(" ".join(map(str, ids)))
    """)
    names = ("daemon", "cli")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name,
                               names[1 - i]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)
             for i, name in enumerate(names)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    first, second = ([int(x) for x in out.split()] for out, _ in outputs)
    assert len(set(first) | set(second)) == 600
    assert min(first) < max(second) and min(second) < max(first)  # they interleaved
    with history(tmp_path) as h:
        stats = {s.agent: s for s in h.stats()}
        assert stats["daemon"].ok == stats["cli"].ok == 300
    check = sqlite3.connect(tmp_path / "state/history.sqlite3")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


def test_a_full_disk_raises_state_error_and_corrupts_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt", size_kib=1024) as mnt:
        h = history(mnt)
        kept = []
        for i in range(20):
            run_id = h.begin(agent="a", schedule="s", slug="default", source="daemon",
                             started_at=T0 + i)
            h.finish(run_id, finished_at=T0 + i + 1, exit_code=0)
            kept.append(run_id)
        filler = fill(mnt)
        with pytest.raises(StateError) as err:
            for i in range(100_000):  # the WAL may still have room for a few rows
                run_id = h.begin(agent="a", schedule="s", slug="default", source="daemon",
                                 started_at=T0 + 100 + i)
                h.finish(run_id, finished_at=T0 + 101 + i, exit_code=1,
                         stderr_tail="e" * STDERR_TAIL_BYTES)
                kept.append(run_id)
        message = str(err.value)
        assert str(h.path) in message and "full" in message
        assert message.startswith(("cannot record the start of a run in",
                                   "cannot record the end of run"))
        filler.unlink()
        # Space is back: the same instance writes again, and everything it said it wrote is
        # there, in a database that checks clean.
        again = h.begin(agent="a", schedule="s", slug="default", source="daemon",
                        started_at=T0 + 10**6)
        h.close()
        check = sqlite3.connect(mnt / "state/history.sqlite3")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {row[0] for row in check.execute("SELECT id FROM runs")}
        check.close()
        assert set(kept) | {again} <= ids


def test_a_lock_never_released_is_a_clear_error(tmp_path: Path) -> None:
    history(tmp_path).begin(agent="a", schedule="s", slug="default", source="run",
                            started_at=T0)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
         str(tmp_path / "state/history.sqlite3")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(StateError, match=r"cannot record the start of a run in .*locked"):
            history(tmp_path, busy_timeout_ms=200).begin(
                agent="a", schedule="s", slug="default", source="run", started_at=T0)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert history(tmp_path).begin(agent="a", schedule="s", slug="default", source="run",
                                   started_at=T0) == 2  # the refused row took no id


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "state/history.sqlite3"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="move it aside"):
        history(tmp_path).query()
    assert db.read_bytes() == b"this is not sqlite" * 100


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    history(tmp_path).query()
    conn = sqlite3.connect(tmp_path / "state/history.sqlite3")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="newer dotagent"):
        history(tmp_path).query()


def test_importing_history_does_not_import_sqlite3() -> None:
    code = ("import sys; from pathlib import Path; from dotagent.paths import Home; "
            "from dotagent.state.history import History; History(Home(Path('/nonexistent'))); "
            "print('sqlite3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
