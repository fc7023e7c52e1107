"""Each attack is detected by verify with the right kind, and recorded exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dotagent.audit import AuditLog, events
from dotagent.cli.audit import group
from dotagent.paths import Home


def make_log(n: int = 10) -> tuple[AuditLog, Path]:
    home = Home.from_env()
    log = AuditLog(home)
    for i in range(n):
        log.append(events.AgentRun(agent="inbox", schedule="hourly", slug="default",
                                   exit_code=0, duration_seconds=i, timed_out=False))
    return log, home.audit_log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def broken_events(path: Path) -> list[dict[str, object]]:
    out = []
    for line in lines_of(path):
        try:
            event = json.loads(line)["event"]
        except ValueError:
            continue
        if event["event_type"] == "audit_chain_broken":
            out.append(event)
    return out


def test_intact_log_verifies() -> None:
    log, _ = make_log()
    report = log.verify()
    assert report.ok and report.lines == 10 and report.problems == []


def test_edit_middle_line() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[4] = lines[4].replace(b'"duration_seconds":4', b'"duration_seconds":9')
    write_lines(path, lines)
    report = log.verify()
    assert not report.ok
    first = report.problems[0]
    assert (first.line, first.kind) == (5, "edit")
    assert len(report.problems) == 1
    assert report.recorded == 1
    [event] = broken_events(path)
    assert event["kind"] == "edit" and event["line"] == 5 and event["position"] == 5


def test_edit_last_line_caught_by_head() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[9] = lines[9].replace(b'"exit_code":0', b'"exit_code":1')
    write_lines(path, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(10, "edit")]


def test_delete_middle_line() -> None:
    log, path = make_log()
    lines = lines_of(path)
    del lines[4]
    write_lines(path, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(5, "deletion")]
    assert "1 entry missing before line 5" in report.problems[0].detail


def test_delete_first_line() -> None:
    log, path = make_log()
    write_lines(path, lines_of(path)[1:])
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(1, "deletion")]


def test_swap_two_lines() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(path, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(3, "reorder")]


def test_swap_distant_lines() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[1], lines[7] = lines[7], lines[1]
    write_lines(path, lines)
    report = log.verify()
    assert report.problems[0].line == 2
    assert {p.kind for p in report.problems} == {"reorder"}


def test_cut_last_two_lines_reported_once() -> None:
    log, path = make_log()
    write_lines(path, lines_of(path)[:-2])
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(9, "truncation")]
    assert report.recorded == 1
    [event] = broken_events(path)
    assert event["kind"] == "truncation"

    again = log.verify()
    assert again.recorded == 0
    assert len(broken_events(path)) == 1
    # The break was recorded and the head re-anchored on the surviving entries plus the
    # record of the break itself: the chain from here on is whole again.
    assert again.ok and again.lines == 9


def test_cut_last_line_in_half() -> None:
    log, path = make_log()
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    cut = data[: last_start + (len(data) - last_start) // 2]
    path.write_bytes(cut)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(10, "torn")]
    # Recording the break was an append: the torn bytes were moved aside first.
    sides = list(path.parent.glob("audit.log.torn-*"))
    assert len(sides) == 1 and sides[0].read_bytes() == cut[last_start:]
    assert [e["kind"] for e in broken_events(path)] == ["torn"]
    assert log.verify().ok


def test_unparsable_middle_line_is_torn() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[5] = lines[5][:40]
    write_lines(path, lines)
    report = log.verify()
    assert report.problems[0].line == 6 and report.problems[0].kind == "torn"


def test_persistent_damage_recorded_once() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[2] = lines[2].replace(b"inbox", b"inbux")
    write_lines(path, lines)
    assert log.verify().recorded == 1
    second = log.verify()
    assert not second.ok and second.recorded == 0
    assert len(broken_events(path)) == 1


def test_truncation_detected_by_next_append() -> None:
    """The daemon appending before anyone verifies still records the cut."""
    log, path = make_log()
    write_lines(path, lines_of(path)[:-3])
    log.append(events.TickStarted(agents_scanned=1))
    [event] = broken_events(path)
    assert event["kind"] == "truncation"
    assert log.verify().ok
    assert len(broken_events(path)) == 1


def test_deleted_head_is_reported_from_the_lock_file_copy() -> None:
    log, path = make_log()
    head_file = Home.from_env().state_dir / "audit.head"
    head_file.unlink()
    write_lines(path, lines_of(path)[:-1])  # and hide the last entry
    log.append(events.TickStarted(agents_scanned=1))
    kinds = [json.loads(line)["event"] for line in lines_of(path)[-3:]]
    assert kinds[0]["event_type"] == "audit_repaired"
    assert json.loads(lines_of(path)[-3])["severity"] == "critical"
    assert kinds[1]["event_type"] == "audit_chain_broken" and kinds[1]["kind"] == "truncation"
    assert log.verify().ok


def test_cli_verify_exit_codes_and_json() -> None:
    _, path = make_log()
    runner = CliRunner()
    ok = runner.invoke(group, ["verify"])
    assert ok.exit_code == 0 and "intact: 10 entries" in ok.output

    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(path, lines)
    bad = runner.invoke(group, ["verify", "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report["ok"] is False and report["lines"] == 10
    assert report["head"]["count"] == 10
    assert report["problems"][0]["line"] == 3 and report["problems"][0]["kind"] == "reorder"
    assert set(report["problems"][0]) >= {"line", "kind", "detail"}

    human = runner.invoke(group, ["verify"])
    assert human.exit_code == 1
    assert "line 3: reorder" in human.output


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_logs(n: int) -> None:
    log, path = make_log(n)
    assert log.verify().ok
    write_lines(path, [])
    report = log.verify()
    assert [p.kind for p in report.problems] == ["truncation"]
