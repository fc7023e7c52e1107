"""Recorded breaks stay visible until acknowledged; a lost head record is a break (S15.9);
every command announces what the writer records; OS errors name the file and the operation.

All through the real `dotagent` executable; the log is seeded with the library."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from dotagent.audit import AuditLog, events
from dotagent.paths import Home

from helpers import DOTAGENT, dotagent, simple_agent


def seed(n: int = 8) -> Path:
    log = AuditLog(Home.from_env())
    for i in range(n):
        log.append(events.AgentRun(agent="inbox", schedule="hourly", slug="default",
                                   exit_code=0, duration_seconds=i, timed_out=False))
    return Home.from_env().audit_log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in lines_of(path) if x.strip()]


def of_type(path: Path, kind: str) -> list[dict]:
    return [e for e in entries(path) if e["event"]["event_type"] == kind]


def verify_json() -> tuple[int, dict]:
    p = dotagent("audit", "verify", "--json")
    assert "Traceback" not in p.stderr
    return p.returncode, json.loads(p.stdout)


def head_file() -> Path:
    return Home.from_env().state_dir / "audit.head"


def lock_file() -> Path:
    return Home.from_env().audit_log.with_name("audit.log.lock")


# ---------------------------------------------------------------- item 4: recorded breaks
def test_truncated_tail_fails_every_verify_until_acknowledged() -> None:
    path = seed()
    write_lines(path, lines_of(path)[:-2])

    first = dotagent("audit", "verify")
    assert first.returncode == 1, first.stdout
    assert "line 7: truncation" in first.stdout and "[break 7]" in first.stdout
    # The summary says what the two numbers are, instead of "6 entries; head 7".
    assert ("6 entries, head record now at entry 7 (" in first.stdout
            and "1 entry recorded by this check)" in first.stdout)

    second = dotagent("audit", "verify")
    assert second.returncode == 1, second.stdout
    assert second.stdout.startswith("audit log NOT OK: 1 recorded break not acknowledged")
    assert "break 7, recorded " in second.stdout and "NOT ACKNOWLEDGED" in second.stdout
    assert "acknowledge with: dotagent audit acknowledge 7" in second.stdout

    code, report = verify_json()
    assert code == 1 and report["ok"] is False and report["problems"] == []
    assert report["unacknowledged"] == 1
    [brk] = report["breaks"]
    assert brk["record_line"] == 7 and brk["kind"] == "truncation" and brk["line"] == 7
    assert brk["acknowledged"] is False and brk["acknowledgement"] is None
    assert brk["recorded_at"] == entries(path)[6]["ts"]
    assert brk["record_sha256"] == hashlib.sha256(lines_of(path)[6]).hexdigest()
    assert len(of_type(path, "audit_chain_broken")) == 1  # recorded once


@pytest.mark.parametrize("damage", ["torn tail", "deleted log", "emptied log",
                                    "deleted middle line"])
def test_any_command_that_records_a_break_says_so_and_verify_remembers(
        damage: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    path = seed()
    lines = lines_of(path)
    if damage == "torn tail":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "deleted log":
        path.unlink()
    elif damage == "emptied log":
        path.write_bytes(b"")
    else:
        write_lines(path, lines[:3] + lines[4:])
    root = tmp_path / "agents"
    simple_agent(root, "quiet", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(root)

    ran = dotagent("run", "quiet", env=cli_env)
    assert ran.returncode == 0, ran.stderr
    critical = [x for x in ran.stderr.splitlines() if x.startswith("[dotagent] critical:")]
    assert len(critical) == 1, ran.stderr
    assert "the audit log is damaged" in critical[0] and "audit_chain_broken" in critical[0]
    [brk] = of_type(path, "audit_chain_broken")
    kind = brk["event"]["kind"]
    assert kind == {"torn tail": "torn", "deleted log": "truncation",
                    "emptied log": "truncation", "deleted middle line": "deletion"}[damage]

    again = dotagent("run", "quiet", env=cli_env)  # recorded once, announced once
    assert "[dotagent] critical" not in again.stderr
    for _ in range(2):
        code, report = verify_json()
        assert code == 1
        assert [(b["kind"], b["acknowledged"]) for b in report["breaks"]] == [(kind, False)]


def test_a_dead_stderr_does_not_stop_the_record(cli_env: dict[str, str]) -> None:
    path = seed()
    write_lines(path, lines_of(path)[:-1])
    for target in ("closed", "full"):
        if target == "full":
            write_lines(path, lines_of(path)[:-1])
        with open(os.devnull, "w") as null:
            p = subprocess.run(
                [DOTAGENT, "selfcheck", "--record"], env=cli_env, stdout=null,
                stderr=subprocess.DEVNULL if target == "closed" else open("/dev/full", "w"),  # noqa: SIM115
                check=False, timeout=60)
        assert p.returncode == 0
    assert [e["event"]["kind"] for e in of_type(path, "audit_chain_broken")] == [
        "truncation", "truncation"]


def test_deleted_middle_line_passes_once_acknowledged_but_stays_listed() -> None:
    path = seed()
    lines = lines_of(path)
    write_lines(path, lines[:3] + lines[4:])
    assert dotagent("audit", "verify").returncode == 1
    ack = dotagent("audit", "acknowledge", "--all")
    assert ack.returncode == 0, ack.stderr
    after = dotagent("audit", "verify")
    assert after.returncode == 0, after.stdout
    # The damage is still in the file, and said so, but acknowledged.
    assert after.stdout.startswith("audit log DAMAGED (acknowledged): 1 problem")
    assert "line 4: deletion" in after.stdout and "acknowledged by " in after.stdout


# ---------------------------------------------------------------- acknowledge
def two_breaks() -> Path:
    path = seed()
    write_lines(path, lines_of(path)[:-1])
    AuditLog(Home.from_env()).append(events.TickStarted(agents_scanned=1))  # records it
    write_lines(path, lines_of(path)[:-1])  # cut the tick: a second truncation
    assert dotagent("audit", "verify").returncode == 1
    return path


def test_acknowledge_by_position_then_all() -> None:
    path = two_breaks()
    code, report = verify_json()
    positions = [b["record_line"] for b in report["breaks"]]
    assert len(positions) == 2 and report["unacknowledged"] == 2

    one = dotagent("audit", "acknowledge", str(positions[0]))
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"acknowledged break {positions[0]} (recorded ")
    [ack] = of_type(path, "audit_break_acknowledged")
    assert ack["severity"] == "notice"
    record = lines_of(path)[positions[0] - 1]
    assert ack["event"]["line"] == positions[0]
    assert ack["event"]["sha256"] == hashlib.sha256(record).hexdigest()
    assert ack["event"]["kind"] == "truncation"
    assert ack["event"]["uid"] == os.getuid() and ack["event"]["user"]

    code, report = verify_json()
    assert code == 1 and report["unacknowledged"] == 1
    first, second = report["breaks"]
    assert first["acknowledged"] is True and second["acknowledged"] is False
    assert first["acknowledgement"]["uid"] == os.getuid()
    assert first["acknowledgement"]["at"] == ack["ts"]
    assert dotagent("audit", "verify").stdout.count("NOT ACKNOWLEDGED") == 1

    rest = dotagent("audit", "acknowledge", "--all")
    assert rest.returncode == 0 and rest.stdout.count("acknowledged break") == 1
    code, report = verify_json()
    assert code == 0 and report["ok"] is True and report["unacknowledged"] == 0
    assert [b["acknowledged"] for b in report["breaks"]] == [True, True]  # still listed
    human = dotagent("audit", "verify").stdout
    assert human.startswith("audit log intact: ") and "all acknowledged" in human


def test_acknowledging_twice_or_nothing_is_a_usage_error() -> None:
    path = two_breaks()
    _, report = verify_json()
    position = report["breaks"][0]["record_line"]
    assert dotagent("audit", "acknowledge", str(position)).returncode == 0
    before = path.read_bytes()

    twice = dotagent("audit", "acknowledge", str(position))
    assert twice.returncode == 2
    assert f"the break recorded at line {position} was already acknowledged by " in twice.stderr
    unknown = dotagent("audit", "acknowledge", "1")
    assert unknown.returncode == 2 and "no recorded break at line 1 of " in unknown.stderr
    for args in ([], ["--all", str(position)], ["0"], ["x"]):
        p = dotagent("audit", "acknowledge", *args)
        assert p.returncode == 2, args
        assert "Traceback" not in p.stderr
    assert path.read_bytes() == before  # nothing recorded by a refusal

    assert dotagent("audit", "acknowledge", "--all").returncode == 0
    nothing = dotagent("audit", "acknowledge", "--all")
    assert nothing.returncode == 2
    assert "nothing to acknowledge: all 2 recorded breaks are acknowledged" in nothing.stderr


def test_acknowledge_on_an_intact_log_acknowledges_nothing() -> None:
    seed(3)
    p = dotagent("audit", "acknowledge", "--all")
    assert p.returncode == 2 and "the audit log records no break" in p.stderr


# ---------------------------------------------------------------- item 5: the head record
@pytest.mark.parametrize("how", ["deleted", "garbage", "emptied"])
def test_lost_head_record_is_a_break_until_acknowledged(how: str) -> None:
    path = seed(7)
    if how == "deleted":
        head_file().unlink()
    else:
        head_file().write_bytes(b"" if how == "emptied" else b"\x00garbage{")
    first = dotagent("audit", "verify")
    assert first.returncode == 1, first.stdout
    assert "head record — " in first.stdout
    word = {"deleted": "was deleted", "garbage": "is garbled", "emptied": "is empty"}[how]
    assert f"{head_file()} {word}" in first.stdout
    assert "judged against its copy in audit.log.lock (7 entries" in first.stdout
    assert "7 entries, head record now at entry 8 (" in first.stdout
    [brk] = of_type(path, "audit_chain_broken")
    assert brk["severity"] == "critical" and brk["event"]["kind"] == "head"
    assert brk["event"]["position"] == 7 and brk["event"]["line"] is None

    second = dotagent("audit", "verify")
    assert second.returncode == 1
    assert "break 8, recorded " in second.stdout and "head record: " in second.stdout
    assert dotagent("audit", "acknowledge", "8").returncode == 0
    assert dotagent("audit", "verify").returncode == 0
    assert len(of_type(path, "audit_chain_broken")) == 1


def test_deleted_head_found_by_another_command_is_announced(cli_env: dict[str, str]) -> None:
    path = seed(3)
    head_file().unlink()
    p = dotagent("selfcheck", "--record", env=cli_env)
    assert p.returncode == 0
    assert "[dotagent] critical: the audit log's head record cannot be trusted: " in p.stderr
    assert [e["event"]["kind"] for e in of_type(path, "audit_chain_broken")] == ["head"]


def test_head_and_its_copy_deleted_with_our_bookkeeping_in_the_log_is_a_break() -> None:
    path = seed(3)
    path.write_bytes(path.read_bytes() + b'{"ts":"20')  # a torn tail: moved aside, recorded
    AuditLog(Home.from_env()).append(events.TickStarted(agents_scanned=1))
    evidence = [i for i, e in enumerate(entries(path), 1)
                if e["event"]["event_type"] == "audit_repaired"]
    assert evidence
    head_file().unlink()
    lock_file().write_bytes(b"")
    p = dotagent("audit", "verify")
    assert p.returncode == 1, p.stdout
    assert "are both gone, although the log shows dotagent kept a head (line " \
           f"{evidence[0]})" in p.stdout
    assert [e["event"]["kind"] for e in of_type(path, "audit_chain_broken")] == ["head"]


def test_upstream_log_without_a_head_is_adopted_with_a_notice() -> None:
    first = (b'{"ts":"2026-05-18T09:00:00-0300","severity":"info","event":{"event_type":'
             b'"daemon_started","version":"0.1.3","pid":4242},"prev_hash":"GENESIS"}')
    second = (b'{"ts":"2026-05-18T09:00:01-0300","severity":"info","event":{"event_type":'
              b'"tick_started","agents_scanned":2},"prev_hash":"'
              + hashlib.sha256(first).hexdigest().encode() + b'"}')
    home = Home.from_env()
    home.root.mkdir(parents=True, exist_ok=True)
    write_lines(home.audit_log, [first, second])
    lock_file().write_bytes(b"")  # upstream leaves its lock file empty

    p = dotagent("audit", "verify")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0] == ("audit log intact: 2 entries, head record now at "
                                        "entry 3 (" + p.stdout.split("(", 1)[1].split(":", 1)[0]
                                        + ": 1 entry recorded by this check)")
    assert "adopted the existing log of 2 entries" in p.stderr
    [notice] = entries(home.audit_log)[2:]
    assert notice["severity"] == "notice"
    assert notice["event"]["event_type"] == "audit_repaired"
    assert of_type(home.audit_log, "audit_chain_broken") == []
    code, report = verify_json()
    assert code == 0 and report["breaks"] == [] and report["warnings"] == []


def test_intact_summary_names_what_the_numbers_are() -> None:
    seed(7)
    p = dotagent("audit", "verify")
    assert p.returncode == 0
    head = json.loads(head_file().read_text())
    assert p.stdout == (f"audit log intact: 7 entries, head record at entry 7 "
                        f"({head['sha256'][:12]})\n"
                        "✓ chain intact from genesis\n"
                        f"file: {Home.from_env().audit_log}\n"
                        "scope: current segment\n"
                        "segments: none — the log has never rotated\n")


# ---------------------------------------------------------------- item 14: OS errors
@pytest.mark.parametrize("args", [["audit", "verify"], ["audit", "show"],
                                  ["audit", "repair"], ["selfcheck", "--record"],
                                  ["audit", "acknowledge", "--all"]])
def test_audit_log_that_is_a_symlink_to_dev_null_is_refused_by_name(args: list[str]) -> None:
    home = Home.from_env()
    home.root.mkdir(parents=True, exist_ok=True)
    home.audit_log.symlink_to(os.devnull)
    p = dotagent(*args)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "Invalid argument" not in p.stderr
    assert f"the audit log {home.audit_log}: it is a symlink to /dev/null, a character " \
           "device, not a regular file" in p.stderr
    assert p.stderr.startswith("Error: cannot ")


@pytest.mark.parametrize("args", [["audit", "verify"], ["audit", "show"]])
def test_audit_log_that_is_a_fifo_does_not_hang(args: list[str]) -> None:
    home = Home.from_env()
    home.root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(home.audit_log)
    p = dotagent(*args, timeout=20)
    assert p.returncode == 1 and "it is a named pipe, not a regular file" in p.stderr


def test_head_record_path_taken_by_a_directory_is_named() -> None:
    seed(2)
    state = Home.from_env().state_dir
    head_file().unlink()
    head_file().mkdir()  # the head record's name is taken by a directory
    p = dotagent("selfcheck", "--record")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"cannot read the head record {state / 'audit.head'}: it is a directory" in p.stderr


def test_doctor_still_checks_manifests_beside_an_unusable_audit_log(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "agents"
    simple_agent(root, "quiet", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(root)
    assert dotagent("run", "quiet", env=cli_env).returncode == 0
    home = Home.from_env()
    home.audit_log.unlink()
    home.audit_log.symlink_to(os.devnull)
    (home.state_dir / "known_manifests.json").unlink()
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1, p.stderr  # the unusable audit log is an error of its own
    assert f"error: {home.audit_log}: it is a symlink (to /dev/null)" in p.stdout
    assert "'quiet': manifest ok" in p.stdout and "Traceback" not in p.stderr


def test_a_break_upstream_recorded_is_listed_and_acknowledged_like_ours() -> None:
    first = (b'{"ts":"2026-05-18T09:00:00-0300","severity":"info","event":{"event_type":'
             b'"daemon_started","version":"0.1.3","pid":4242},"prev_hash":"GENESIS"}')
    broken = (b'{"ts":"2026-05-18T09:00:01-0300","severity":"critical","event":{"event_type":'
              b'"audit_chain_broken","position":3,"expected_prev_hash":"aa","actual_prev_hash":'
              b'"bb"},"prev_hash":"' + hashlib.sha256(first).hexdigest().encode() + b'"}')
    home = Home.from_env()
    home.root.mkdir(parents=True, exist_ok=True)
    write_lines(home.audit_log, [first, broken])
    # Upstream's own record is not our head bookkeeping: the log is adopted, not a head break.
    code, report = verify_json()
    assert code == 1 and report["problems"] == []
    [brk] = report["breaks"]
    assert (brk["record_line"], brk["kind"], brk["position"]) == (2, None, 3)
    assert "break 2, recorded 2026-05-18T09:00:01-0300: break at entry 3 (recorded by " \
           "upstream dotagent) — NOT ACKNOWLEDGED" in dotagent("audit", "verify").stdout
    assert dotagent("audit", "acknowledge", "2").returncode == 0
    assert dotagent("audit", "verify").returncode == 0


def test_repair_records_a_deleted_head_and_says_so() -> None:
    path = seed(3)
    head_file().unlink()
    p = dotagent("audit", "repair")
    assert p.returncode == 0
    assert p.stdout.startswith(f"recorded head record: {head_file()} was deleted")
    assert "[dotagent] critical" not in p.stderr  # said once, in the command's own output
    assert [e["event"]["kind"] for e in of_type(path, "audit_chain_broken")] == ["head"]
