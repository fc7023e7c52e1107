"""Each attack is detected by verify with the right kind, and recorded exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dotagent.audit import AuditLog, events, hash_line
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


def acknowledge_all(log: AuditLog) -> None:
    assert log.acknowledge(None, user="tester", uid=1000)


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
    # record of the break itself: the chain from here on is whole again, but the recorded
    # break keeps verify failing until someone acknowledges it.
    assert again.problems == [] and again.lines == 9
    assert not again.ok and [(b.record_line, b.kind) for b in again.unacknowledged] == [
        (9, "truncation")]
    acknowledge_all(log)
    assert log.verify().ok


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
    again = log.verify()
    assert again.problems == [] and not again.ok
    acknowledge_all(log)
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
    report = log.verify()
    assert report.problems == [] and [b.kind for b in report.unacknowledged] == ["truncation"]
    assert not report.ok
    assert len(broken_events(path)) == 1


def test_deleted_head_is_reported_from_the_lock_file_copy() -> None:
    log, path = make_log()
    head_file = Home.from_env().state_dir / "audit.head"
    head_file.unlink()
    write_lines(path, lines_of(path)[:-1])  # and hide the last entry
    log.append(events.TickStarted(agents_scanned=1))
    kinds = [json.loads(line)["event"] for line in lines_of(path)[-3:]]
    # The deleted head is a break of its own (S15.9), then the cut it hid.
    assert kinds[0]["event_type"] == "audit_chain_broken" and kinds[0]["kind"] == "head"
    assert "was deleted" in kinds[0]["detail"] and kinds[0]["line"] is None
    assert json.loads(lines_of(path)[-3])["severity"] == "critical"
    assert kinds[1]["event_type"] == "audit_chain_broken" and kinds[1]["kind"] == "truncation"
    report = log.verify()
    assert report.problems == [] and [b.kind for b in report.unacknowledged] == [
        "head", "truncation"]
    acknowledge_all(log)
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
    # The head now includes the break this verify recorded.
    assert report["head"]["count"] == 11 and report["appended"] == 1
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


# ---------------------------------------------------------------- the head and its copy
def head_file() -> Path:
    return Home.from_env().state_dir / "audit.head"


def copy_file() -> Path:
    return Home.from_env().audit_log.with_name("audit.log.lock")


def rewrite_head_to_match(path: Path) -> None:
    """What an attacker who cut the tail writes: a head consistent with the shorter file."""
    lines = lines_of(path)
    head_file().write_text(json.dumps({"count": len(lines), "sha256": hash_line(lines[-1]),
                                       "size": path.stat().st_size}))


def test_cut_tail_hidden_by_a_rewritten_head_is_caught_by_the_copy() -> None:
    log, path = make_log()
    write_lines(path, lines_of(path)[:-3])
    rewrite_head_to_match(path)
    result = CliRunner().invoke(group, ["verify"])
    assert result.exit_code == 1, result.output
    assert "line 8: truncation" in result.output
    assert "behind its copy" in result.output
    events_ = [json.loads(line) for line in lines_of(path)[7:]]
    assert events_[0]["event"]["event_type"] == "audit_chain_broken"
    assert events_[0]["event"]["kind"] == "head"
    assert events_[0]["severity"] == "critical"
    assert events_[1]["event"]["kind"] == "truncation"
    # Recorded once; the cut tail is re-anchored, the records are the evidence.
    again = log.verify()
    assert again.problems == [] and again.recorded == 0 and again.warnings == []
    assert [b.kind for b in again.unacknowledged] == ["head", "truncation"]


def test_cut_tail_hidden_by_a_rewritten_head_is_caught_by_the_next_append() -> None:
    log, path = make_log()
    write_lines(path, lines_of(path)[:-3])
    rewrite_head_to_match(path)
    log.append(events.TickStarted(agents_scanned=1))
    assert [e["kind"] for e in broken_events(path)] == ["head", "truncation"]
    report = log.verify()
    assert report.problems == [] and len(report.unacknowledged) == 2


def test_head_rewritten_back_over_an_intact_log_is_a_critical_note() -> None:
    log, path = make_log()
    lines = lines_of(path)
    size7 = sum(len(x) + 1 for x in lines[:7])
    head_file().write_text(json.dumps({"count": 7, "sha256": hash_line(lines[6]),
                                       "size": size7}))
    report = log.verify()
    assert not report.ok
    [problem] = report.problems
    assert problem.kind == "head" and "behind its copy" in problem.detail
    assert problem.record_line == 11
    [recorded] = [json.loads(x) for x in lines_of(path)[10:]]
    assert recorded["severity"] == "critical"
    assert recorded["event"]["event_type"] == "audit_chain_broken"
    assert recorded["event"]["kind"] == "head"
    assert report.head is not None and report.head.count == 11
    again = log.verify()
    assert again.problems == [] and again.warnings == [] and len(again.unacknowledged) == 1


def test_same_count_different_sha_in_the_copy_is_an_edit_of_the_last_line() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[9] = lines[9].replace(b'"exit_code":0', b'"exit_code":1')
    write_lines(path, lines)
    rewrite_head_to_match(path)
    report = log.verify(record=False)
    assert [(p.line, p.kind) for p in report.problems] == [(None, "head"), (10, "edit")]


def test_a_crash_between_head_and_copy_leaves_the_copy_behind_and_is_no_alarm() -> None:
    log, path = make_log(3)
    before = head_file().read_bytes()

    def crash(*_args: object) -> None:
        raise SystemExit("power cut")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dotagent.audit.chain.os.pwrite", crash)
        with pytest.raises(SystemExit):
            log.append(events.TickStarted(agents_scanned=1))
    # The head was replaced before the copy was touched: the copy lags, never leads.
    assert head_file().read_bytes() != before
    report = log.verify()
    assert report.ok and report.warnings == [] and report.recorded == 0
    assert b"audit_repaired" not in path.read_bytes()


def test_copy_with_leftover_bytes_after_a_crash_is_still_read() -> None:
    log, path = make_log(3)
    # A shorter copy written over a longer one, crash before the truncate.
    copy_file().write_bytes(copy_file().read_bytes() + b'9999,"size":12345}')
    write_lines(path, lines_of(path)[:-1])
    rewrite_head_to_match(path)
    assert [p.kind for p in log.verify(record=False).problems] == ["head", "truncation"]


# ---------------------------------------------------------------- head vs. count
def test_duplicated_middle_line_is_only_a_reorder() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines.insert(5, lines[5])
    write_lines(path, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(7, "reorder")]


def test_garbage_line_inserted_in_the_middle_is_only_torn() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines.insert(5, b"garbage")
    write_lines(path, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(6, "torn")]


def forged_after_the_end(path: Path) -> bytes:
    lines = lines_of(path)
    forged = lines[3][:-66] + b"a" * 64 + b'"}'
    write_lines(path, [*lines, forged])
    return forged


def test_forged_line_appended_after_the_head_is_an_edit_of_that_line() -> None:
    log, path = make_log()
    forged = forged_after_the_end(path)
    head_before = log.head()
    report = log.verify(record=False)
    assert [(p.line, p.kind) for p in report.problems] == [(11, "edit")]
    assert report.warnings == []  # not a lagging head
    assert log.head() == head_before

    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(11, "edit")]
    assert report.recorded == 1
    head = log.head()
    assert head is not None and head.sha256 != hash_line(forged)
    for _ in range(2):  # it stays damage, told the same way, recorded once
        again = log.verify()
        assert not again.ok and again.recorded == 0
        assert [(p.line, p.kind) for p in again.problems] == [(11, "edit")]
    assert len(broken_events(path)) == 1


def test_forged_line_appended_after_the_head_is_recorded_by_the_next_append(
        caplog: pytest.LogCaptureFixture) -> None:
    log, path = make_log()
    forged_after_the_end(path)
    with caplog.at_level("WARNING", logger="dotagent.audit"):
        log.append(events.TickStarted(agents_scanned=1))
    assert "lagged" not in caplog.text
    [event] = broken_events(path)
    assert (event["kind"], event["line"]) == ("edit", 11)
    assert [(p.line, p.kind) for p in log.verify().problems] == [(11, "edit")]


# ---------------------------------------------------------------- an edited last line
def test_edited_last_line_keeps_failing_verify() -> None:
    _, path = make_log()
    lines = lines_of(path)
    lines[9] = lines[9].replace(b'"exit_code":0', b'"exit_code":1')
    write_lines(path, lines)
    runner = CliRunner()
    for _ in range(3):
        result = runner.invoke(group, ["verify"])
        assert result.exit_code == 1, result.output
        assert "line 10: edit" in result.output
    assert lines_of(path)[9] == lines[9]  # still in place
    assert [e["kind"] for e in broken_events(path)] == ["edit"]


def test_edited_last_line_found_by_an_append_keeps_failing_verify() -> None:
    log, path = make_log()
    lines = lines_of(path)
    lines[9] = lines[9].replace(b'"exit_code":0', b'"exit_code":1')
    write_lines(path, lines)
    log.append(events.TickStarted(agents_scanned=1))
    log.append(events.TickStarted(agents_scanned=2))
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(10, "edit")]
    assert report.recorded == 0 and len(broken_events(path)) == 1
