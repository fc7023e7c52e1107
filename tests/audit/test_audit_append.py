"""Appends: concurrent writers never fork or lose entries; crashes are repaired, not hidden."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dotagent.audit import GENESIS, AuditLog, events, hash_line
from dotagent.paths import Home

PROCS = 5
PER_PROC = 1000


def _writer(root: str, proc: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    log = AuditLog(Home(Path(root)))
    barrier.wait()  # every process starts appending at the same instant
    for i in range(PER_PROC):
        log.append(events.AgentRecovered(agent=f"p{proc}", schedule=str(i), attempts=1))


def test_concurrent_appends_never_fork_or_lose(dotagent_home: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCS)
    procs = [ctx.Process(target=_writer, args=(str(dotagent_home), k, barrier))
             for k in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=110)
        assert p.exitcode == 0
    log = AuditLog(Home.from_env())
    report = log.verify()
    assert report.ok, report.problems
    assert report.lines == PROCS * PER_PROC
    seen: Counter[tuple[Any, Any]] = Counter()
    prev = GENESIS
    for raw in (dotagent_home / "audit.log").read_bytes().splitlines():
        entry = json.loads(raw)
        assert entry["prev_hash"] == prev
        prev = hash_line(raw)
        seen[(entry["event"]["agent"], entry["event"]["schedule"])] += 1
    assert len(seen) == PROCS * PER_PROC and set(seen.values()) == {1}
    assert log.current_head() == (PROCS * PER_PROC, prev)
    assert (dotagent_home / "audit.log.lock").exists()  # never deleted


def test_torn_fragment_moved_aside_before_next_append(dotagent_home: Path) -> None:
    log = AuditLog(Home.from_env())
    for i in range(3):
        log.append(events.TickStarted(agents_scanned=i))
    path = dotagent_home / "audit.log"
    good = path.read_bytes()
    fragment = b'{"ts":"2026-05-19T14:30:01-0300","severity":"info","event":{"event_ty'
    path.write_bytes(good + fragment)  # a writer died mid-line: the head never saw it

    line = log.append(events.TickStarted(agents_scanned=9))

    data = path.read_bytes()
    assert data.startswith(good) and fragment not in data
    [side] = list(dotagent_home.glob("audit.log.torn-*"))
    assert side.read_bytes() == fragment
    tail = [json.loads(x) for x in data.splitlines()[3:]]
    repaired, mine = tail
    assert repaired["event"]["event_type"] == "audit_repaired"
    assert repaired["severity"] == "notice"
    assert repaired["event"]["path"] == str(side)
    assert repaired["event"]["sha256"] == hash_line(fragment)
    assert repaired["event"]["line"] == 4
    assert repaired["prev_hash"] == hash_line(good.splitlines()[-1])
    assert json.dumps(mine, ensure_ascii=False, separators=(",", ":")) == line
    report = log.verify()
    assert report.ok and report.lines == 5
    # An interrupted append is not tampering: nothing critical was recorded.
    assert b"audit_chain_broken" not in data


def test_repair_command_moves_torn_tail(dotagent_home: Path) -> None:
    from click.testing import CliRunner

    from dotagent.cli.audit import group

    log = AuditLog(Home.from_env())
    log.append(events.TickStarted(agents_scanned=1))
    path = dotagent_home / "audit.log"
    path.write_bytes(path.read_bytes() + b'{"ts":"2026')
    result = CliRunner().invoke(group, ["repair"])
    assert result.exit_code == 0
    assert "moved 11 bytes of a torn final line" in result.output
    assert log.verify().ok
    assert CliRunner().invoke(group, ["repair"]).output == "nothing to repair\n"


def test_lagging_head_repaired_with_warning(dotagent_home: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(Home.from_env())
    log.append(events.TickStarted(agents_scanned=1))
    head_file = dotagent_home / "state" / "audit.head"
    stale = head_file.read_bytes()
    stale_copy = (dotagent_home / "audit.log.lock").read_bytes()
    log.append(events.TickStarted(agents_scanned=2))
    log.append(events.TickStarted(agents_scanned=3))
    # Crash between the append and the head update, twice: the head is two entries behind.
    head_file.write_bytes(stale)
    (dotagent_home / "audit.log.lock").write_bytes(stale_copy)

    with caplog.at_level("WARNING", logger="dotagent.audit"):
        log.append(events.TickStarted(agents_scanned=4))
    assert "lagged the log by 2 entries" in caplog.text
    head = log.head()
    assert head is not None and head.count == 4
    report = log.verify()
    assert report.ok and report.warnings == []
    assert b"audit_chain_broken" not in (dotagent_home / "audit.log").read_bytes()


def test_verify_repairs_lagging_head(dotagent_home: Path) -> None:
    log = AuditLog(Home.from_env())
    log.append(events.TickStarted(agents_scanned=1))
    head_file = dotagent_home / "state" / "audit.head"
    copy_file = dotagent_home / "audit.log.lock"
    stale, stale_copy = head_file.read_bytes(), copy_file.read_bytes()
    log.append(events.TickStarted(agents_scanned=2))
    # A crash between the line's fsync and the head update: head and copy both stale.
    head_file.write_bytes(stale)
    copy_file.write_bytes(stale_copy)
    report = log.verify()
    assert report.ok and any("lagged" in w for w in report.warnings)
    assert report.head is not None and report.head.count == 2
    assert log.head() == report.head


def test_current_head_and_empty_log(dotagent_home: Path) -> None:
    log = AuditLog(Home.from_env())
    assert log.current_head() == (0, GENESIS)
    assert log.verify().ok
    line = log.append(events.DaemonStarted(version="0.1.0", pid=1))
    assert log.current_head() == (1, hash_line(line.encode()))
    head = log.head()
    assert head is not None
    assert head.size == (dotagent_home / "audit.log").stat().st_size
    assert json.loads((dotagent_home / "audit.log.lock").read_bytes())["count"] == 1


def test_append_severity_override(dotagent_home: Path) -> None:
    log = AuditLog(Home.from_env())
    line = log.append(events.AgentRecovered(agent="a", schedule="s", attempts=9),
                      severity=events.Severity.CRITICAL)
    assert '"severity":"critical"' in line


def test_blank_lines_are_skipped_like_upstream(dotagent_home: Path) -> None:
    log = AuditLog(Home.from_env())
    first = log.append(events.TickStarted(agents_scanned=1))
    path = dotagent_home / "audit.log"
    path.write_bytes(path.read_bytes() + b"\n")
    second = log.append(events.TickStarted(agents_scanned=2))
    assert second.endswith(f'"prev_hash":"{hash_line(first.encode())}"}}')
    assert log.verify().ok
