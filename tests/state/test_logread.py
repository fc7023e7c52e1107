"""Reading agent logs back: a run's block by its header, tails with their runs' times."""

from __future__ import annotations

from pathlib import Path

from dotagent.state.agentlog import AgentLogWriter
from dotagent.state.logread import find_run, merge_tails, tail_agent

T = 1_790_000_000  # 2026-09-21T21:33:20Z, a whole second


def header(at: int, schedule: str = "main") -> str:
    from dotagent.timefmt import iso_local

    return f"\n=== {iso_local(at)} run started · schedule={schedule} · slug=default ===\n"


def footer(at: int, code: int) -> str:
    from dotagent.timefmt import iso_local

    return f"=== {iso_local(at)} run finished · exit={code} · 0.1s ===\n"


def write(path: Path, *parts: str, max_bytes: int = 10 * 1024 * 1024) -> list[int]:
    """Append each part in turn (as a run does); return the offset each began at."""
    offsets = []
    with AgentLogWriter(path, max_bytes=max_bytes) as writer:
        for part in parts:
            writer.flush()
            offsets.append(path.stat().st_size if path.exists() else 0)
            writer.write(part.encode())
    return offsets


def test_two_runs_in_one_second_are_told_apart(tmp_path: Path) -> None:
    log = tmp_path / "a" / "a.log"
    first = header(T) + "one\n" + footer(T, 1)
    second = header(T) + "two\n" + footer(T, 0)
    offsets = write(log, first, second)
    run = find_run(log, started_at=T + 0.4, schedule="main", slug="default",
                   log_start=offsets[1])
    assert run is not None and run.lines[1:] == ["two", footer(T, 0).strip()]
    # Without the offset, the recorded exit code decides; without either, the first.
    by_code = find_run(log, started_at=T + 0.4, schedule="main", slug="default", exit_code=0)
    assert by_code is not None and by_code.lines[1] == "two"
    plain = find_run(log, started_at=T + 0.4, schedule="main", slug="default")
    assert plain is not None and plain.lines[1] == "one" and plain.complete
    # Another schedule, or a start too far from the header's second: not this run.
    assert find_run(log, started_at=T, schedule="other", slug="default") is None
    assert find_run(log, started_at=T + 5, schedule="main", slug="default") is None


def test_a_run_cut_short_ends_at_the_next_header(tmp_path: Path) -> None:
    log = tmp_path / "a" / "a.log"
    write(log, header(T) + "was killed\n", header(T + 60) + "next\n" + footer(T + 61, 0))
    run = find_run(log, started_at=T, schedule="main", slug="default")
    assert run is not None and run.lines[1:] == ["was killed"] and not run.complete


def test_tails_carry_their_runs_start_and_merge_in_time_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "a.log", tmp_path / "b" / "b.log"
    write(a, header(T) + "a1\n" + footer(T, 0), header(T + 20) + "a2\n" + footer(T + 21, 0))
    write(b, header(T + 10) + "b1\n" + footer(T + 11, 0))
    tails = {"a": tail_agent(a, 100, stamped=True), "b": tail_agent(b, 100, stamped=True)}
    said = [(name, s.line) for name, s in merge_tails(tails, 100)
            if s.line in {"a1", "a2", "b1"}]
    assert said == [("a", "a1"), ("b", "b1"), ("a", "a2")]
    # Only one schedule's lines, the blank line before each of its headers included.
    write(a, header(T + 30, "other") + "o1\n" + footer(T + 31, 0))
    only = [s.line for s in tail_agent(a, 100, schedule="other")]
    assert only == ["", header(T + 30, "other").strip(), "o1", footer(T + 31, 0).strip()]
    assert [s.line for s in tail_agent(a, 2, schedule="main")] == ["a2", footer(T + 21, 0).strip()]


def test_a_follower_never_rereads_a_part_the_writer_compressed(tmp_path: Path) -> None:
    """The held file is rotated *and* compressed (a new file, another inode) before the next
    poll; a part that was already there gets compressed too: neither is read again."""
    import gzip

    from dotagent.state.logfollow import LogFollower

    active = tmp_path / "job.log"
    old = tmp_path / "job.log.20261202T100000.000000Z"
    old.write_bytes(b"past 1\npast 2\n")
    active.write_bytes(b"1\n2\n")
    follower = LogFollower(active)
    assert follower.poll() == ["1", "2"]
    with open(active, "ab") as fh:
        fh.write(b"3\n")
    rotated = tmp_path / "job.log.20261202T110000.000000Z"
    active.rename(rotated)
    for part in (rotated, old):  # the writer compresses rotated parts: new files
        Path(f"{part}.gz").write_bytes(gzip.compress(part.read_bytes()))
        part.unlink()
    active.write_bytes(b"4\n5\n")
    assert follower.poll() == ["3", "4", "5"]
    assert follower.poll() == []
    follower.close()
