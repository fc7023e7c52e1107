"""Per-agent logs rotate by size (SPEC S14.10; docs/logs.md): real files, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dotagent.runner.output import OutputCollector, open_run_log
from dotagent.state.agentlog import (
    AgentLogWriter,
    is_active_name,
    segment_name,
    segments,
)
from tmpfs import small_tmpfs

from helpers import dotagent, simple_agent

KIB = 1024


def lines_of(log: Path) -> list[str]:
    """Every line of an agent's log, oldest segment first, then the active file."""
    out: list[str] = []
    for seg in segments(log):
        out += seg.path.read_text().splitlines()
    if log.exists():
        out += log.read_text().splitlines()
    return out


def test_segment_names_fit_upstreams_retention_rule() -> None:
    name = segment_name("report.log", 1_779_201_000_123_456)
    assert name == "report.log.20260519T143000.123456Z"
    assert is_active_name("report.log") and is_active_name("LOCK")
    assert not is_active_name(name) and not is_active_name(name + ".gz")
    assert not is_active_name("dotagent.log.2026-05-19")


def test_rotates_between_lines_and_keeps_the_newest(tmp_path: Path) -> None:
    log = tmp_path / "a" / "a.log"
    with AgentLogWriter(log, max_bytes=4 * KIB, keep=3) as w:
        for i in range(1000):
            w.write(f"line {i:04d} {'x' * 40}\n".encode())
            w.flush()
    segs = segments(log)
    assert len(segs) == 3 and w.rotations > 3
    assert all(s.path.stat().st_size <= 4 * KIB for s in segs)
    assert log.stat().st_size <= 4 * KIB
    got = lines_of(log)
    assert all(line.startswith(("line ", "[dotagent] log rotated")) for line in got)
    numbers = [int(line.split()[1]) for line in got if line.startswith("line ")]
    assert numbers == list(range(numbers[0], 1000))  # the newest lines, whole and in order
    assert [s.stamp_us for s in segs] == sorted({s.stamp_us for s in segs})
    for path in (log, *(s.path for s in segs)):
        assert path.stat().st_mode & 0o777 == 0o600
    assert log.parent.stat().st_mode & 0o777 == 0o700


def test_a_mid_run_rotation_says_where_the_runs_start_is(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with AgentLogWriter(log, max_bytes=2 * KIB, keep=5) as w:
        for i in range(60):
            w.write(f"{i:03d} {'y' * 60}\n".encode())
            w.flush()
    first_new = log.read_text().splitlines()[0]
    newest = segments(log)[-1].path.name
    assert first_new == f"[dotagent] log rotated; this run's earlier output is in {newest}"
    # A run that starts on a full file rotates before its first line, without a note.
    with AgentLogWriter(log, max_bytes=log.stat().st_size + 10, keep=5) as w:
        w.write(b"=== run started ===\n" + b"z" * 20 + b"\n")
    assert log.read_text() == "=== run started ===\n" + "z" * 20 + "\n"


def test_stamps_stay_in_order_when_the_clock_goes_back(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with AgentLogWriter(log, max_bytes=100, keep=5) as w:
        w.write(b"a" * 80 + b"\n")
        w.flush()
        os.utime(log, ns=(2_000_000_000 * 10**9, 2_000_000_000 * 10**9))  # 2033
        w.write(b"b" * 80 + b"\n")
        w.flush()
        os.utime(log, ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))  # 2001: set back
        w.write(b"c" * 80 + b"\n")
        w.flush()
    stamps = [s.stamp_us for s in segments(log)]
    assert stamps == [2_000_000_000 * 10**6, 2_000_000_000 * 10**6 + 1]
    assert [s.path.read_text().splitlines()[-1][:1] for s in segments(log)] == ["a", "b"]


def test_a_writer_follows_a_rotation_done_by_another(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    first = AgentLogWriter(log, max_bytes=1000, keep=5)
    second = AgentLogWriter(log, max_bytes=1000, keep=5)
    first.write(b"1 " + b"x" * 600 + b"\n")
    first.flush()
    second.write(b"2 " + b"y" * 600 + b"\n")
    second.flush()  # second rotates: 1 is now in a segment
    first.write(b"3 after\n")
    first.flush()  # first notices and writes into the new active file
    first.close()
    second.close()
    (seg,) = segments(log)
    assert seg.path.read_text().startswith("1 ")
    assert log.read_text().splitlines() == [
        "2 " + "y" * 600,
        f"[dotagent] log rotated; this run's earlier output is in {seg.path.name}",
        "3 after"]
    assert (first.rotations, second.rotations) == (0, 1)


def test_a_removed_active_file_is_recreated(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with AgentLogWriter(log) as w:
        w.write(b"one\n")
        w.flush()
        log.unlink()  # the retention sweep deleted it after 14 idle days
        w.write(b"two\n")
    assert log.read_text() == ("[dotagent] log rotated; this run's earlier output is in the "
                               "previous log file\ntwo\n")


def test_other_files_in_the_directory_are_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    for name in ("a.log.notes", "a.log.2026", "b.log.20260519T143000.123456Z", "README"):
        (tmp_path / name).write_text("mine")
    with AgentLogWriter(log, max_bytes=50, keep=0) as w:
        for _ in range(5):
            w.write(b"x" * 40 + b"\n")
            w.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README", "a.log", "a.log.2026", "a.log.notes", "b.log.20260519T143000.123456Z"]


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dotagent.state.agentlog import AgentLogWriter
    log, tag, count, max_bytes, keep, go = sys.argv[1:]
    deadline = time.monotonic() + 30
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    w = AgentLogWriter(Path(log), max_bytes=int(max_bytes), keep=int(keep))
    for i in range(int(count)):
        w.write(f"{tag} {i:06d} {'p' * 80}\\n".encode())
        if i % 3 == 0:
            w.flush()
    w.close()
    print(w.rotations)
""")


def concurrent_writers(tmp_path: Path, count: int, max_bytes: int, keep: int) -> list[int]:
    log, go = tmp_path / "agent" / "agent.log", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), tag, str(count),
                               str(max_bytes), str(keep), str(go)],
                              stdout=subprocess.PIPE, text=True) for tag in ("A", "B")]
    go.touch()
    rotations = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        rotations.append(int(out))
    return rotations


def test_two_processes_rotate_without_losing_or_doubling_lines(tmp_path: Path) -> None:
    line = len(f"A 000000 {'p' * 80}\n")
    max_bytes = 64 * KIB
    count = int(5.5 * max_bytes / line / 2)  # both together fill 5½ files: 5 rotations
    rotations = concurrent_writers(tmp_path, count, max_bytes, keep=5)
    log = tmp_path / "agent" / "agent.log"
    segs = segments(log)
    assert len(segs) == 5 and sum(rotations) == 5  # one rotation per segment: none doubled
    sizes = [s.path.stat().st_size for s in segs]
    assert all(max_bytes - 4 * line * 3 < size <= max_bytes for size in sizes), sizes
    got = [x for x in lines_of(log) if not x.startswith("[dotagent]")]
    assert sorted(got) == sorted(f"{t} {i:06d} {'p' * 80}" for t in "AB" for i in range(count))


def test_two_processes_keep_exactly_keep_old_files(tmp_path: Path) -> None:
    max_bytes = 16 * KIB
    rotations = concurrent_writers(tmp_path, 2000, max_bytes, keep=3)
    log = tmp_path / "agent" / "agent.log"
    segs = segments(log)
    assert len(segs) == 3 and sum(rotations) > 3
    assert sorted(p.name for p in log.parent.iterdir()) == sorted(
        ["agent.log", *(s.path.name for s in segs)])
    got = [x for x in lines_of(log) if not x.startswith("[dotagent]")]
    assert len(got) == len(set(got))
    assert all(x[0] in "AB" and x.endswith("p" * 80) and len(x) == 89 for x in got)


# -- through RunLog, as runs use it ---------------------------------------------------------
def test_a_run_printing_far_more_than_the_disk_holds_stays_bounded(tmp_path: Path) -> None:
    """The disk is 256 KiB; the run prints 8 MiB; the log keeps within 2 × 64 KiB."""
    with small_tmpfs(tmp_path / "disk", size_kib=256) as disk:
        log = disk / "agents" / "flood" / "flood.log"
        with open_run_log(log, max_bytes=64 * KIB, keep=1) as run_log:
            collector = OutputCollector(run_log)
            chunk = b"".join(b"%07d %s\n" % (i, b"f" * 120) for i in range(500))
            for _ in range(128):
                collector("stdout", chunk)
            collector.close()
        assert run_log.error is None
        assert len(segments(log)) == 1
        total = sum(p.stat().st_size for p in log.parent.iterdir())
        assert total <= 2 * 64 * KIB
        assert lines_of(log)[-1].startswith("0000499 ")


def test_a_full_disk_stops_the_log_not_the_run(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", size_kib=256) as disk:
        log = disk / "a.log"
        with open_run_log(log, max_bytes=10 * 1024 * KIB, keep=5) as run_log:
            collector = OutputCollector(run_log)
            for _ in range(100):
                collector("stderr", b"e" * 4000 + b"\n")
            collector.close()
        assert run_log.error == (f"cannot write to the log {log}: No space left on device "
                                 "(the rest of this run's output is not logged)")
        assert collector.tail("stderr").endswith("e" * 100)


def test_a_failed_rotation_is_reported_as_such(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"old\n" * 100)

    def refuse(src: object, dst: object) -> None:
        raise OSError(30, "Read-only file system", str(src))

    with open_run_log(log, max_bytes=400, keep=5) as run_log:
        monkeypatch.setattr(os, "rename", refuse)
        run_log.write(b"new\n")
        run_log.flush()
    assert run_log.error is not None
    assert run_log.error.startswith(f"cannot rotate the log {log}: cannot rename it to a.log.")
    assert run_log.error.endswith("Z: Read-only file system (the rest of this run's output is "
                                  "not logged)")
    assert log.read_bytes() == b"old\n" * 100


def test_dotagent_run_rotates_a_large_output(root: Path, cli_env: dict[str, str],
                                             dotagent_home: Path) -> None:
    """21 MiB of output from one real run: two 10 MiB segments and the rest, every line whole
    and present, the header in the first segment and the footer in the active file."""
    simple_agent(root, "loud", "sh", ["-c", "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
                                            "IJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopq "
                                            "| head -n 250000"])
    t0 = time.monotonic()
    p = dotagent("run", "loud", env=cli_env | {"DOTAGENT_ROOT": str(root)}, timeout=120)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 60
    log = dotagent_home / "logs/agents/loud/loud.log"
    segs = segments(log)
    assert len(segs) == 2
    assert all(s.path.stat().st_size <= 10 * 1024 * KIB for s in segs)
    got = lines_of(log)
    body = [x for x in got if x.startswith("0123")]
    assert len(body) == 250000 and len(set(body)) == 1 and len(body[0]) == 89
    assert "run started" in segs[0].path.read_text().split("\n", 2)[1]
    assert "run finished" in got[-1]
    assert sum(x.startswith("[dotagent] log rotated") for x in got) == 2


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "agents"
    r.mkdir()
    return r


def test_spans_say_where_a_runs_lines_are(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"an earlier run\n")
    with open_run_log(log, max_bytes=300, keep=5) as run_log:
        for i in range(6):
            run_log.write(f"{i} {'s' * 70}\n".encode())
            run_log.flush()
    spans = run_log.spans
    assert [s.name for s in spans[:-1]] == [seg.path.name for seg in segments(log)]
    assert spans[-1].name == "a.log"
    got = b"".join((tmp_path / s.name).read_bytes()[s.start:s.end] for s in spans)
    assert got.decode().splitlines() == [
        line for line in lines_of(log) if line != "an earlier run"]
    assert spans[0].start == len(b"an earlier run\n")
