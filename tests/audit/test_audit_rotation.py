"""Audit-log rotation in upstream 0.6's format (UPSTREAM-0.6 §1, SPEC S15.1): the seam,
segment names, crash repair, `verify --full` along the seams with upstream's statuses,
recorded breaks and acknowledgements across segments, `show` across segments."""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest

from audit import upstream_log as up
from dotagent.audit import AuditLog, events
from dotagent.audit.chain import HEAD_FILE
from dotagent.audit.rotation import DEFAULT_MAX_BYTES, is_segment_name, list_segments
from dotagent.errors import StateError
from dotagent.paths import Home

from helpers import dotagent, simple_agent

NOW = datetime(2026, 8, 26, 10, 15, 0).astimezone()


def home() -> Home:
    return Home.from_env()


def run(i: int) -> events.AgentRun:
    return events.AgentRun(agent="inbox", schedule="hourly", slug="default", exit_code=0,
                           duration_seconds=i, timed_out=False)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in lines_of(path) if x.strip()]


def of_type(path: Path, kind: str) -> list[dict]:
    return [e for e in entries(path) if e["event"]["event_type"] == kind]


def every_entry() -> list[dict]:
    out = []
    for name in [*list_segments(home().audit_log), "audit.log"]:
        out.extend(entries(home().root / name))
    return out


def fill(log: AuditLog, n: int, *, start: int = 0, now: datetime | None = NOW) -> None:
    for i in range(n):
        log.append(run(start + i), now=now)


def verify_json(*args: str) -> tuple[int, dict]:
    p = dotagent("audit", "verify", *args, "--json")
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


def small_log(max_bytes: int = 1500) -> AuditLog:
    return AuditLog(home(), max_bytes=max_bytes)


def rotated_once(extra: int = 2) -> tuple[AuditLog, str]:
    """A log rotated exactly once at NOW, with `extra` entries after the seam."""
    log = small_log()
    n = 0
    while not list_segments(log.path):
        log.append(run(n), now=NOW)
        n += 1
    fill(log, extra - 1, start=n)
    [name] = list_segments(log.path)
    return log, name


def head_state() -> tuple[bytes, bytes]:
    lock = home().root / "audit.log.lock"
    return (home().state_dir / HEAD_FILE).read_bytes(), lock.read_bytes()


def set_head_state(state: tuple[bytes, bytes]) -> None:
    (home().state_dir / HEAD_FILE).write_bytes(state[0])
    (home().root / "audit.log.lock").write_bytes(state[1])


# ---------------------------------------------------------------- the seam and the names
def test_the_append_that_finds_the_threshold_reached_rotates_first() -> None:
    log = small_log()
    while not log.path.exists() or log.path.stat().st_size < log.max_bytes:
        log.append(run(0), now=NOW)
    before = lines_of(log.path)
    assert not list_segments(log.path)  # reaching the threshold is not enough: the next append
    log.append(run(99), now=NOW)
    name = f"audit.log.{NOW.strftime('%Y%m%dT%H%M%S')}"
    assert list_segments(log.path) == [name]
    assert lines_of(log.path.with_name(name)) == before  # renamed as it was

    seam_line, event_line = lines_of(log.path)
    tail = up.sha(before[-1])
    expected = up.line(NOW.strftime("%Y-%m-%dT%H:%M:%S%z"), "notice", {
        "event_type": "audit_log_rotated", "rotated_to": name, "entries": len(before),
        "first_ts": json.loads(before[0])["ts"], "tail_hash": tail}, tail)
    assert seam_line == expected  # byte for byte what upstream writes (§1)
    assert json.loads(event_line)["prev_hash"] == up.sha(seam_line)
    assert json.loads(event_line)["event"]["duration_seconds"] == 99
    # The head describes the live file: two entries now, and its copy agrees.
    head = json.loads((home().state_dir / HEAD_FILE).read_text())
    assert head == {"count": 2, "sha256": up.sha(event_line),
                    "size": log.path.stat().st_size}
    assert json.loads((home().root / "audit.log.lock").read_text()) == head


def test_segment_names_take_suffixes_and_give_up_after_999() -> None:
    log = small_log(max_bytes=400)
    fill(log, 12)  # every other append rotates, all within the same second
    names = list_segments(log.path)
    stamp = f"audit.log.{NOW.strftime('%Y%m%dT%H%M%S')}"
    assert names[:3] == [stamp, f"{stamp}-1", f"{stamp}-2"]
    assert all(is_segment_name(n) for n in names)
    # Sorted oldest first by number, not as text (-10 after -9).
    assert names == sorted(names, key=lambda n: int(n.rpartition("-")[2]) if "-" in n[10:]
                           else 0)
    later = NOW + timedelta(seconds=1)
    taken = f"audit.log.{later.strftime('%Y%m%dT%H%M%S')}"
    for n in range(1000):
        (home().root / (taken if n == 0 else f"{taken}-{n}")).write_bytes(b"")
    with pytest.raises(StateError, match="-1 … -999 all exist"):
        log.append(run(0), now=later)


@pytest.mark.parametrize("name, ok", [
    ("audit.log.20260826T101500", True), ("audit.log.20260826T101500-17", True),
    ("audit.log.20260826-101500", False), ("audit.log.2026082T101500", False),
    ("audit.log.20260826T101500-", False), ("audit.log.20260826T1015x0", False),
    ("audit.log.torn-20260826T101500", False), ("audit.log.lock", False),
    ("../audit.log.20260826T101500", False), ("audit.log.20260826T101500/..", False),
])
def test_what_counts_as_a_segment_name(name: str, ok: bool) -> None:
    assert is_segment_name(name) is ok


def test_threshold_is_upstreams_32_mib_by_default_through_the_real_cli(
        cli_env: dict[str, str]) -> None:
    assert DEFAULT_MAX_BYTES == 32 * 1024 * 1024
    # A live file just past 32 MiB, written as our writer would (chained, with its head).
    root = home().root
    lines = up.chain(up.GENESIS, [(up.ts_of(i), "notice", up.agent_run(i))
                                  for i in range(112_000)])
    up.write(root / "audit.log", lines)
    size = (root / "audit.log").stat().st_size
    assert size >= DEFAULT_MAX_BYTES
    (root / "state").mkdir(exist_ok=True)
    (root / "state" / HEAD_FILE).write_text(json.dumps(
        {"count": len(lines), "sha256": up.sha(lines[-1]), "size": size}))
    simple_agent(root / "agents", "tiny", "/bin/true", [])
    p = dotagent("run", "tiny", env=cli_env)
    assert p.returncode == 0, p.stderr
    [name] = list_segments(home().audit_log)
    assert lines_of(root / name) == lines
    seam = entries(root / "audit.log")[0]
    assert seam["event"]["event_type"] == "audit_log_rotated"
    assert seam["event"]["entries"] == 112_000
    code, report = verify_json("--full")
    assert code == 0 and report["status"] == "intact_from_genesis"
    assert report["lines"] == 112_000 + len(entries(root / "audit.log"))


def test_concurrent_writers_rotate_without_forking_the_chain() -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(k,)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log = small_log(max_bytes=2000)
    report = log.verify(full=True)
    assert report.ok and report.status.status == "intact_from_genesis", report.to_json()
    runs = [e for e in every_entry() if e["event"]["event_type"] == "agent_run"]
    assert len(runs) == 4 * 40
    assert len(list_segments(log.path)) >= 10


def _writer(k: int) -> None:
    log = AuditLog(Home.from_env(), max_bytes=2000, announce=None)
    for i in range(40):
        log.append(run(k * 1000 + i))


def test_last_line_changed_before_a_rotation_stays_visible_in_the_segment() -> None:
    log = small_log()
    while not log.path.exists() or log.path.stat().st_size < log.max_bytes:
        log.append(run(1), now=NOW)
    lines = lines_of(log.path)
    lines[-1] = lines[-1].replace(b'"exit_code":0', b'"exit_code":3')
    up.write(log.path, lines)
    log.append(run(2), now=NOW)  # finds the change (records it), then rotates
    [name] = list_segments(log.path)
    seg = lines_of(log.path.with_name(name))
    assert json.loads(seg[-1])["event"]["event_type"] == "audit_chain_broken"  # before the seam
    assert entries(log.path)[0]["event"]["tail_hash"] == up.sha(seg[-1])
    report = log.verify(full=True)
    assert report.status.status == "broken" and report.status.segment == name
    assert [(p.segment, p.kind) for p in report.problems] == [(name, "edit")]
    assert report.problems[0].record == f"{name}:{len(seg)}" and not report.ok
    log.acknowledge(None, user="tester", uid=1000)
    assert log.verify(full=True).ok


def test_verify_and_acknowledge_write_into_the_file_they_read_never_after_a_seam() -> None:
    log = small_log()
    while not log.path.exists() or log.path.stat().st_size < log.max_bytes:
        log.append(run(1), now=NOW)
    lines = lines_of(log.path)
    lines[1] = lines[1].replace(b'"exit_code":0', b'"exit_code":3')
    up.write(log.path, lines)
    report = log.verify()
    assert [p.kind for p in report.problems] == ["edit"] and not list_segments(log.path)
    assert report.problems[0].record == str(len(lines) + 1)  # in the file it was found in
    log.acknowledge(None, user="tester", uid=1000)
    assert not list_segments(log.path)
    log.append(run(2), now=NOW)  # the next ordinary append rotates
    assert len(list_segments(log.path)) == 1
    assert log.verify(full=True).ok


# ---------------------------------------------------------------- crash repair
def test_crash_between_rename_and_seam_is_repaired_with_the_same_seam() -> None:
    log = small_log()
    fill(log, 5)
    while log.path.stat().st_size < log.max_bytes:
        log.append(run(1), now=NOW)
    before = head_state()
    with mock.patch("dotagent.audit.chain.write_atomic", side_effect=OSError(28, "boom")), \
            pytest.raises(StateError):
        log.append(run(2), now=NOW)
    assert not log.path.exists() and len(list_segments(log.path)) == 1
    assert head_state() == before  # the head still describes the renamed file

    log.append(run(3), now=NOW)
    _seam, repaired, last = entries(log.path)
    [name] = list_segments(log.path)
    # The very seam the rotation would have written (same moment, same bytes).
    seg = lines_of(log.path.with_name(name))
    assert lines_of(log.path)[0] == up.line(
        NOW.strftime("%Y-%m-%dT%H:%M:%S%z"), "notice",
        {"event_type": "audit_log_rotated", "rotated_to": name, "entries": len(seg),
         "first_ts": json.loads(seg[0])["ts"], "tail_hash": up.sha(seg[-1])}, up.sha(seg[-1]))
    assert repaired["event"]["event_type"] == "audit_repaired"
    assert repaired["severity"] == "notice" and name in repaired["event"]["reason"]
    assert last["event"]["duration_seconds"] == 3
    assert of_type(log.path, "audit_chain_broken") == []
    report = log.verify(full=True)
    assert report.ok and report.status.status == "intact_from_genesis"


def test_crash_after_the_seam_before_the_head_update_is_a_lag_not_a_break() -> None:
    log = small_log()
    fill(log, 3)
    while log.path.stat().st_size < log.max_bytes:
        log.append(run(1), now=NOW)
    before = head_state()
    log.append(run(2), now=NOW)  # rotates
    # As if the process died right after writing the seam: the new live file holds only the
    # seam, and the head and its copy still describe the rotated file.
    log.path.write_bytes(lines_of(log.path)[0] + b"\n")
    set_head_state(before)
    log.append(run(3), now=NOW)
    assert [e["event"]["event_type"] for e in entries(log.path)] == ["audit_log_rotated",
                                                                     "agent_run"]
    report = log.verify(full=True)
    assert report.ok and report.problems == [] and report.breaks == []
    assert report.status.status == "intact_from_genesis"


def test_crash_between_the_head_and_its_copy_is_not_a_rewritten_head() -> None:
    log = small_log()
    fill(log, 3)
    while log.path.stat().st_size < log.max_bytes:
        log.append(run(1), now=NOW)
    copy_before = head_state()[1]
    log.append(run(2), now=NOW)
    # Head saved for the new file, its copy still the rotated file's (died in between).
    (home().root / "audit.log.lock").write_bytes(copy_before)
    report = log.verify()
    assert report.ok and report.problems == [] and report.breaks == [], report.to_json()
    log.append(run(3))
    assert log.verify(full=True).ok


def test_torn_seam_is_set_aside_and_written_again() -> None:
    log = small_log()
    fill(log, 3)
    while log.path.stat().st_size < log.max_bytes:
        log.append(run(1), now=NOW)
    before = head_state()
    log.append(run(2), now=NOW)
    seam = lines_of(log.path)[0]
    log.path.write_bytes(seam[:70])  # the seam write cut short (an upstream writer crashed)
    set_head_state(before)
    log.append(run(3), now=NOW)
    kinds = [e["event"]["event_type"] for e in entries(log.path)]
    assert kinds == ["audit_log_rotated", "audit_repaired", "audit_repaired", "agent_run"]
    [torn] = [p for p in os.listdir(home().root) if p.startswith("audit.log.torn-")]
    assert (home().root / torn).read_bytes() == seam[:70]  # nothing lost
    report = log.verify(full=True)
    assert report.ok and report.breaks == [] and report.status.status == "intact_from_genesis"


def test_live_file_deleted_after_rotation_is_a_recorded_truncation() -> None:
    log, _ = rotated_once(extra=4)
    log.path.unlink()
    log.append(run(7))
    [broken] = of_type(log.path, "audit_chain_broken")
    assert broken["event"]["kind"] == "truncation" and "5 entries" in broken["event"]["detail"]
    assert broken["severity"] == "critical"
    code, report = verify_json("--full")
    # The chain itself is whole again (seam written anew); the record fails verify.
    assert code == 1 and report["status"] == "intact_from_genesis"
    assert report["unacknowledged"] == 1
    assert dotagent("audit", "acknowledge", "--all").returncode == 0
    assert verify_json("--full")[0] == 0


def test_lost_seam_is_written_for_the_segment_the_head_names_not_the_newest_name() -> None:
    # When summer time ends, local stamps go back an hour: the newer segment sorts first.
    log = small_log()
    fill(log, 1)
    while not list_segments(log.path):
        log.append(run(1), now=NOW)
    earlier = NOW - timedelta(hours=1)
    while log.path.stat().st_size < log.max_bytes:
        log.append(run(2), now=earlier)
    with mock.patch("dotagent.audit.chain.write_atomic", side_effect=OSError(5, "boom")), \
            pytest.raises(StateError):
        log.append(run(3), now=earlier)
    names = list_segments(log.path)
    assert len(names) == 2 and not log.path.exists()
    log.append(run(4), now=NOW)
    seam = entries(log.path)[0]["event"]
    assert seam["rotated_to"] == names[0]  # the 09:15 one, which the head vouches for
    assert of_type(log.path, "audit_chain_broken") == []
    report = log.verify(full=True)
    assert report.ok and report.status.status == "intact_from_genesis", report.to_json()


def test_audit_repair_writes_a_lost_seam_again() -> None:
    log, name = rotated_once(extra=1)
    log.path.unlink()
    p = dotagent("audit", "repair")
    assert p.returncode == 0, p.stderr
    assert f"segment {name} exists: wrote its seam again" in p.stdout
    assert entries(log.path)[0]["event"]["rotated_to"] == name


def test_verify_racing_a_rotation_records_the_damage_where_it_now_is() -> None:
    import dotagent.audit.chain as chain

    log = small_log(max_bytes=4000)
    fill(log, 6)
    lines = lines_of(log.path)
    lines[2] = lines[2].replace(b'"duration_seconds":2', b'"duration_seconds":7')
    up.write(log.path, lines)
    real_walk = chain.walk

    def walk_then_rotate(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real_walk(*args, **kwargs)
        # Another writer appends past the threshold while this verify has not recorded yet.
        other = AuditLog(home(), max_bytes=4000, announce=None)
        while not list_segments(log.path):
            other.append(run(0), now=NOW)
        return out

    with mock.patch.object(chain, "walk", walk_then_rotate):
        report = log.verify()
    [name] = list_segments(log.path)
    [problem] = report.problems
    assert problem.kind == "edit" and problem.record is not None
    recorded = every_entry()
    broken = [e for e in recorded if e["event"]["event_type"] == "audit_chain_broken"]
    # Recorded once, by verify, after the rotation: in the new live file, naming the segment
    # the damaged line is in now.
    assert len(broken) == 1 and broken[0]["event"]["segment"] == name
    assert broken[0] in entries(log.path)
    again = log.verify(full=True)
    assert [b.kind for b in again.unacknowledged] == ["edit"]
    assert again.problems[0].segment == name and again.problems[0].record is not None


def test_upstream_log_that_crashed_mid_rotation_is_continued() -> None:
    files = up.build(home().root, [4, 3])
    (home().root / "audit.log").unlink()  # upstream died between its rename and its seam
    log = AuditLog(home())
    log.append(run(1))
    kinds = [e["event"]["event_type"] for e in entries(log.path)]
    assert kinds[0] == "audit_log_rotated" and kinds[-1] == "agent_run"
    assert entries(log.path)[0]["event"]["entries"] == len(files["audit.log.20260810T101500"])
    assert of_type(log.path, "audit_chain_broken") == []
    report = log.verify(full=True)
    assert report.ok and report.status.status == "intact_from_genesis"


def test_verify_writes_a_lost_seam_again_before_judging() -> None:
    log, _ = rotated_once(extra=1)
    state = head_state()
    log.path.write_bytes(b"")
    set_head_state(state)
    # (the head vouches for one entry, the seam, which is gone with the file)
    code, report = verify_json()
    assert code == 1 and report["status"] == "intact_since_rotation"
    assert [b["kind"] for b in report["breaks"]] == ["truncation"]


# ---------------------------------------------------------------- upstream's rotated log
def test_a_log_rotated_by_upstream_verifies() -> None:
    files = up.build(home().root, [5, 4, 3])
    names = list(files)[:2]
    code, report = verify_json("--full")
    assert code == 0, report
    assert report["status"] == "intact_from_genesis" and report["ok"] is True
    assert report["scope"] == "full" and report["segments"] == names
    assert report["walked"] == names[::-1] and report["unreached"] == []
    assert report["lines"] == 5 + 5 + 4  # every entry: runs and the two seams
    assert report["problems"] == [] and report["breaks"] == []
    # Plain verify: the live file and its seam's claim, as upstream's current-segment scope.
    code, report = verify_json()
    assert code == 0 and report["scope"] == "current_segment"
    assert {k: report[k] for k in ("status", "since_ts", "segment", "entries_before",
                                   "segment_present")} == {
        "status": "intact_since_rotation", "since_ts": json.loads(files["audit.log"][0])["ts"],
        "segment": names[1], "entries_before": 5, "segment_present": True}
    # And we continue it: the next entry chains on, the walk still reaches GENESIS.
    AuditLog(home()).append(run(1))
    assert verify_json("--full")[1]["status"] == "intact_from_genesis"


def test_text_output_says_status_file_scope_and_segments() -> None:
    files = up.build(home().root, [3, 2])
    [name] = list(files)[:1]
    p = dotagent("audit", "verify")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[1].startswith("✓ chain intact since rotation at ")
    assert f"({name} holds the 3 entries before it)" in lines[1]
    assert lines[2:] == [f"file: {home().audit_log}",
                         "scope: current segment (--full walks the rotated segments too)",
                         f"segments: {name}"]
    full = dotagent("audit", "verify", "--full").stdout.splitlines()
    # (the plain verify above adopted the headless upstream log: one notice more)
    assert full[0].startswith("audit log intact: 7 entries in 2 files, head record at "
                              "entry 4 of audit.log (")
    assert full[1] == "✓ chain intact from genesis"
    assert full[3] == "scope: full (every segment along the seams)"


# ---------------------------------------------------------------- tampered segments
def tamper(name: str, fn) -> None:  # type: ignore[no-untyped-def]
    path = home().root / name
    lines = lines_of(path)
    up.write(path, fn(lines))


def test_edited_line_in_a_segment_is_broken_and_recorded_once() -> None:
    files = up.build(home().root, [6, 4, 3])
    old = next(iter(files))
    tamper(old, lambda ls: [*ls[:2], ls[2].replace(b'"exit_code":0', b'"exit_code":1'),
                            *ls[3:]])
    code, report = verify_json("--full")
    assert code == 1
    assert report["status"] == "broken" and report["segment"] == old
    assert report["position"] == 3  # the link after the edited line (index among entries)
    [p] = report["problems"]
    assert (p["segment"], p["line"], p["kind"]) == (old, 3, "edit")
    [b] = report["breaks"]
    assert b["segment"] == old and b["record_segment"] is None and b["number"] == str(
        p["record"])
    recorded = of_type(home().audit_log, "audit_chain_broken")
    assert [r["event"]["segment"] for r in recorded] == [old]
    assert verify_json("--full")[1]["recorded"] == 0  # once
    # Plain verify does not read the segment's lines, but knows the break is recorded.
    code, plain = verify_json()
    assert code == 1 and plain["status"] == "intact_since_rotation"
    assert plain["unacknowledged"] == 1


def test_deleted_line_in_a_segment_is_a_deletion() -> None:
    files = up.build(home().root, [6, 4, 3])
    old = next(iter(files))
    tamper(old, lambda ls: ls[:2] + ls[3:])
    code, report = verify_json("--full")
    assert code == 1 and report["status"] == "broken" and report["segment"] == old
    assert [(p["segment"], p["kind"], p["line"]) for p in report["problems"]] == [
        (old, "deletion", 3)]


def test_truncated_segment_is_broken_at_its_seam() -> None:
    files = up.build(home().root, [6, 4, 3])
    mid = list(files)[1]
    seam_of_mid = json.loads(files["audit.log"][0])["event"]
    tamper(mid, lambda ls: ls[:-2])
    code, report = verify_json("--full")
    assert code == 1
    assert {k: report[k] for k in ("status", "position", "expected", "segment")} == {
        "status": "broken", "position": 0, "expected": seam_of_mid["tail_hash"],
        "segment": mid}
    assert report["actual"] == up.sha(files[mid][-3])
    assert [(p["segment"], p["kind"]) for p in report["problems"]] == [(mid, "truncation")]


def test_segment_deleted_entirely_leaves_history_unchecked() -> None:
    files = up.build(home().root, [6, 4, 3])
    oldest, _mid = list(files)[:2]
    (home().root / oldest).unlink()
    code, report = verify_json("--full")
    # Upstream's answer: intact since that rotation, with the segment not on disk.
    assert code == 0
    assert {k: report[k] for k in ("status", "segment", "entries_before",
                                   "segment_present")} == {
        "status": "intact_since_rotation", "segment": oldest, "entries_before": 6,
        "segment_present": False}
    text = dotagent("audit", "verify", "--full").stdout
    assert f"{oldest}, with the 6 entries before it, is not on disk" in text


def test_middle_segment_deleted_names_the_one_no_seam_reaches() -> None:
    files = up.build(home().root, [6, 4, 3])
    oldest, mid = list(files)[:2]
    (home().root / mid).unlink()
    code, report = verify_json("--full")
    assert code == 0 and report["status"] == "intact_since_rotation"
    assert report["segment"] == mid and report["segment_present"] is False
    assert report["unreached"] == [oldest]
    assert any(oldest in w for w in report["warnings"])


def forge_live_seam(**changes: object) -> dict[str, list[bytes]]:
    files = up.build(home().root, [6, 4, 3])
    live = files["audit.log"]
    seam = json.loads(live[0])
    for key, value in changes.items():
        if key == "prev_hash":
            seam["prev_hash"] = value
        else:
            seam["event"][key] = value
    first = up.line(seam["ts"], seam["severity"], seam["event"], seam["prev_hash"])
    rest = up.chain(up.sha(first), [(json.loads(x)["ts"], json.loads(x)["severity"],
                                     json.loads(x)["event"]) for x in live[1:]])
    up.write(home().audit_log, [first, *rest])
    return files


def test_forged_seam_with_disagreeing_hashes_is_an_unexplained_truncation() -> None:
    forge_live_seam(prev_hash="0" * 64)
    code, report = verify_json("--full")
    assert code == 1 and report["status"] == "unexplained_truncation"
    assert report["orphan_prev_hash"] == "0" * 64


def test_forged_seam_naming_a_path_is_not_a_seam() -> None:
    forge_live_seam(rotated_to="../audit.log.20260810T101500")
    code, report = verify_json("--full")
    assert code == 1 and report["status"] == "unexplained_truncation"


def test_forged_seam_whose_tail_is_not_the_segments_is_broken() -> None:
    forge_live_seam(tail_hash="f" * 64, prev_hash="f" * 64)
    code, report = verify_json("--full")
    assert code == 1 and report["status"] == "broken" and report["position"] == 0
    assert report["expected"] == "f" * 64 and report["segment"] == "audit.log.20260811T101500"


def test_seam_cycle_is_broken() -> None:
    files = up.build(home().root, [6, 3])
    oldest = next(iter(files))
    # The segment rewritten to start with a seam naming itself (whatever its tail claims, the
    # walk has been there already: a cycle, found before any tail is hashed).
    event = {"event_type": "audit_log_rotated", "rotated_to": oldest, "entries": 9,
             "first_ts": "unknown", "tail_hash": "a" * 64}
    first = up.line(up.ts_of(0), "notice", event, "a" * 64)
    rest = up.chain(up.sha(first), [(json.loads(x)["ts"], "notice", json.loads(x)["event"])
                                    for x in files[oldest][1:]])
    up.write(home().root / oldest, [first, *rest])
    live_seam = up.seam(oldest, [first, *rest], up.ts_of(100))
    live = up.chain(up.sha(live_seam), [(json.loads(x)["ts"], "notice", json.loads(x)["event"])
                                        for x in files["audit.log"][1:]])
    up.write(home().audit_log, [live_seam, *live])
    code, report = verify_json("--full")
    assert code == 1 and report["status"] == "broken"
    assert report["actual"] == f"{oldest} (seam cycle)" and report["position"] == 0
    assert [p["kind"] for p in report["problems"]] == ["reorder"]


def test_live_file_missing_its_first_lines_is_an_unexplained_truncation() -> None:
    files = up.build(home().root, [6, 4, 3])
    up.write(home().audit_log, files["audit.log"][2:])
    code, report = verify_json()
    assert code == 1 and report["status"] == "unexplained_truncation"
    assert report["orphan_prev_hash"] == json.loads(files["audit.log"][2])["prev_hash"]


def test_empty_segment_is_broken() -> None:
    files = up.build(home().root, [6, 4, 3])
    mid = list(files)[1]
    (home().root / mid).write_bytes(b"")
    code, report = verify_json("--full")
    assert code == 1 and report["status"] == "broken" and report["segment"] == mid
    assert report["problems"][0]["kind"] == "truncation"


# ---------------------------------------------------------------- breaks across segments
def test_break_recorded_before_rotation_is_numbered_segment_line_and_acknowledged() -> None:
    log = small_log(max_bytes=3000)
    fill(log, 6)
    lines = lines_of(log.path)
    lines[2] = lines[2].replace(b'"duration_seconds":2', b'"duration_seconds":9')
    up.write(log.path, lines)
    report = log.verify()
    [b] = report.breaks
    assert b.number == str(b.record_line)  # in the live file: its bare line number
    while not list_segments(log.path):
        log.append(run(0), now=NOW)
    [name] = list_segments(log.path)

    p = dotagent("audit", "verify")
    assert p.returncode == 1
    assert f"break {name}:{b.record_line}, recorded " in p.stdout
    assert f"acknowledge with: dotagent audit acknowledge {name}:{b.record_line}" in p.stdout
    # The bare number no longer names it, and says what does.
    wrong = dotagent("audit", "acknowledge", str(b.record_line))
    assert wrong.returncode == 2 and f"{name}:{b.record_line}" in wrong.stderr
    for bad in ("x:3", f"{name}:0", f"{name}:", "audit.log.nope:3"):
        refused = dotagent("audit", "acknowledge", bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, bad
    stamp = name.removeprefix("audit.log.")
    done = dotagent("audit", "acknowledge", f"{stamp}:{b.record_line}")
    assert done.returncode == 0, done.stderr
    assert f"acknowledged break {name}:{b.record_line}" in done.stdout
    [ack] = of_type(log.path, "audit_break_acknowledged")
    assert ack["event"]["segment"] == name and ack["event"]["line"] == b.record_line
    code, report = verify_json()
    assert code == 0 and report["breaks"][0]["acknowledged"] is True
    assert report["breaks"][0]["number"] == f"{name}:{b.record_line}"


def test_acknowledgements_of_live_breaks_look_as_before() -> None:
    log = small_log(max_bytes=1 << 20)
    fill(log, 4)
    lines = lines_of(log.path)
    up.write(log.path, lines[:-1])
    log.verify()
    log.acknowledge(None, user="tester", uid=1000)
    [ack] = of_type(log.path, "audit_break_acknowledged")
    assert "segment" not in ack["event"]
    [broken] = of_type(log.path, "audit_chain_broken")
    assert "segment" not in broken["event"]


def test_lost_head_with_our_bookkeeping_only_in_a_segment_is_still_a_break() -> None:
    log = small_log(max_bytes=2500)
    fill(log, 3)
    (home().state_dir / HEAD_FILE).unlink()
    (home().root / "audit.log.lock").write_bytes(b"")
    log.verify()  # adopts the headless log: an audit_repaired, our bookkeeping
    while not list_segments(log.path):
        log.append(run(0), now=NOW)
    assert of_type(log.path, "audit_repaired") == []  # the notice is in the segment now
    (home().state_dir / HEAD_FILE).unlink()
    (home().root / "audit.log.lock").write_bytes(b"")
    report = log.verify()
    assert [p.kind for p in report.problems] == ["head"]
    assert list_segments(log.path)[0] in report.problems[0].detail


def test_manifest_history_in_a_segment_still_rebuilds_a_lost_cache(
        cli_env: dict[str, str]) -> None:
    agents = home().root / "agents"
    simple_agent(agents, "innocent", "/bin/true", [])
    assert dotagent("run", "innocent", env=cli_env).returncode == 0  # manifest_loaded
    log = small_log(max_bytes=3000)
    while not list_segments(log.path):
        log.append(run(0))
    assert of_type(log.path, "manifest_loaded") == []  # only in the segment now
    (home().state_dir / "known_manifests.json").unlink()
    toml = agents / "innocent" / "agent.toml"
    toml.write_text(toml.read_text() + "\n# edited\n")
    p = dotagent("run", "innocent", env=cli_env)
    assert p.returncode == 0, p.stderr
    # Known from the segment: the edit is drift, not a phantom.
    assert [e["event"]["agent"] for e in of_type(log.path, "manifest_drift_detected")] == [
        "innocent"]
    assert of_type(log.path, "phantom_agent_detected") == []


def test_current_head_before_a_lost_seam_is_rewritten_names_the_segment() -> None:
    log, name = rotated_once(extra=1)
    log.path.unlink()
    seg = lines_of(log.path.with_name(name))
    assert log.current_head() == (len(seg), up.sha(seg[-1]))
    assert not log.path.exists()  # read-only


# ---------------------------------------------------------------- show across segments
def test_show_reads_every_segment_oldest_first_and_n_from_the_newest() -> None:
    files = up.build(home().root, [3, 2, 2])
    p = dotagent("audit", "show", "--json")
    assert p.stdout.encode().splitlines() == [*files["audit.log.20260810T101500"],
                                              *files["audit.log.20260811T101500"],
                                              *files["audit.log"]]
    last = dotagent("audit", "show", "-n", "4", "--json").stdout.encode().splitlines()
    assert last == [files["audit.log.20260811T101500"][-1], *files["audit.log"]]
    live = dotagent("audit", "show", "--current-segment", "--json").stdout.encode()
    assert live.splitlines() == files["audit.log"]
    runs = dotagent("audit", "show", "--event", "agent_run").stdout.splitlines()
    assert len(runs) == 7


def test_show_since_stops_at_segments_rotated_before_the_cutoff() -> None:
    files = up.build(home().root, [3, 2, 2])
    # The oldest segment made unreadable: --since must not need it (rotated away earlier).
    (home().root / "audit.log.20260810T101500").write_bytes(b"garbage\n")
    seam_ts = json.loads(files["audit.log.20260811T101500"][0])["ts"]
    since = datetime.strptime(seam_ts, "%Y-%m-%dT%H:%M:%S%z") + timedelta(seconds=1)
    p = dotagent("audit", "show", "--since", since.isoformat())
    assert p.returncode == 0 and "unreadable" not in p.stdout
    everything = dotagent("audit", "show").stdout
    assert "?  unreadable line audit.log.20260810T101500:1: 'garbage'" in everything


def test_show_stops_where_the_seams_stop() -> None:
    up.build(home().root, [3, 2, 2])
    (home().root / "audit.log.20260811T101500").unlink()
    p = dotagent("audit", "show", "--json")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 3  # the live file only

