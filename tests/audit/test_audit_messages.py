"""What the audit writer says is what happened (issue 7 hardening): an entry that was
appended is never reported as "could not record", a repair that failed never as repaired,
and its diagnostics carry the `[dotagent]` prefix like every other one.

The head record cannot be written when `state/` is not writable; the suite runs as root, so
setpriv drops the capabilities that would let root write anyway.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import DOTAGENT, simple_agent

AS_A_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def dotagent_as_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AS_A_USER, DOTAGENT, *args], capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ))


def entries(home: Path, event_type: str) -> int:
    return (home / "audit.log").read_text().count(f'"event_type":"{event_type}"')


@pytest.fixture
def home(dotagent_home: Path) -> Path:
    simple_agent(dotagent_home / "agents", "ok", "true", [])
    assert dotagent_as_user("run", "ok").returncode == 0
    return dotagent_home


@pytest.fixture
def head_unwritable(home: Path) -> Path:
    state = home / "state"
    state.chmod(0o500)  # the head is replaced through a temporary file in state/
    yield state
    state.chmod(0o700)


def test_an_entry_appended_without_its_head_update_is_said_to_be_recorded(
        home: Path, head_unwritable: Path) -> None:
    p = dotagent_as_user("run", "ok")
    assert p.returncode == 0
    assert entries(home, "agent_run") == 2  # the entry is in the log
    assert "could not record agent_run" not in p.stderr
    assert ("[dotagent] error: recorded agent_run in the audit log, but could not update its "
            f"head record (cannot write {head_unwritable / 'audit.head'}: Permission denied); "
            "the next write to the audit log repairs it\n") in p.stderr


def test_verify_that_cannot_repair_a_lagging_head_does_not_say_repaired(
        home: Path, head_unwritable: Path) -> None:
    assert dotagent_as_user("run", "ok").returncode == 0
    p = dotagent_as_user("audit", "verify")
    assert p.returncode == 1
    assert "repaired" not in p.stderr + p.stdout
    assert p.stderr == ("Error: head record lagged the log by 1 entry (an append whose head "
                        "update did not happen: interrupted, or the head could not be "
                        "written); cannot repair it: cannot write "
                        f"{head_unwritable / 'audit.head'}: Permission denied\n")
    head_unwritable.chmod(0o700)
    p = dotagent_as_user("audit", "verify")
    assert p.returncode == 0, p.stdout
    assert p.stderr == ("[dotagent] warning: head record lagged the log by 1 entry (an append "
                        "whose head update did not happen: interrupted, or the head could not "
                        "be written); repaired\n")


def test_the_writers_notes_carry_the_dotagent_prefix_in_every_command(home: Path) -> None:
    with (home / "audit.log").open("ab") as fh:
        fh.write(b'{"ts":"20')  # a torn final line
    p = dotagent_as_user("run", "ok")
    assert p.returncode == 0
    assert p.stderr.startswith("[dotagent] warning: moved 9 bytes of a torn final line (")


def test_adopting_an_upstream_log_is_said_with_the_prefix(dotagent_home: Path) -> None:
    first = (b'{"ts":"2026-05-18T09:00:00-0300","severity":"info","event":{"event_type":'
             b'"daemon_started","version":"0.1.3","pid":4242},"prev_hash":"GENESIS"}')
    (dotagent_home / "audit.log").write_bytes(first + b"\n")
    (dotagent_home / "audit.log.lock").write_bytes(b"")  # upstream leaves its lock empty
    p = dotagent_as_user("selfcheck", "--record")
    assert p.returncode == 0
    assert p.stderr == ("[dotagent] warning: no head record: adopted the existing log of 1 "
                        "entry as is\n")


# ------------------------------------------------ acknowledge judges the log first
def seeded(n: int = 8) -> Path:
    from dotagent.audit import AuditLog, events
    from dotagent.paths import Home

    log = AuditLog(Home.from_env())
    for i in range(n):
        log.append(events.AgentRun(agent="inbox", schedule="hourly", slug="default",
                                   exit_code=0, duration_seconds=i, timed_out=False))
    return Home.from_env().audit_log


def delete_line(path: Path, number: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[number - 1]
    path.write_bytes(b"".join(lines))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOTAGENT, *args], capture_output=True, text=True, timeout=60,
                          check=False, env=dict(os.environ))


def test_acknowledge_all_records_and_announces_new_damage_instead_of_nothing_to_do(
        dotagent_home: Path) -> None:
    log = seeded()
    delete_line(log, 3)
    assert run_cli("audit", "verify").returncode == 1  # recorded as break 8 (line 8)
    assert run_cli("audit", "acknowledge", "--all").returncode == 0
    delete_line(log, 5)  # new damage, not recorded by anyone yet
    p = run_cli("audit", "acknowledge", "--all")
    assert p.returncode == 1
    assert "all 1 recorded break is acknowledged already" not in p.stderr
    assert p.stderr == ("[dotagent] critical: the audit log is damaged: deletion at line 5: "
                        "entries missing before line 5 (recorded just now as break 9; look "
                        "into it, then acknowledge it)\n"
                        "Error: nothing acknowledged: the break waiting was recorded just now, "
                        "by this command\n")
    p = run_cli("audit", "verify")
    assert p.returncode == 1 and "break 9, recorded" in p.stdout
    assert "NOT ACKNOWLEDGED" in p.stdout
    p = run_cli("audit", "acknowledge", "--all")  # now it has been seen
    assert p.returncode == 0 and p.stdout.startswith("acknowledged break 9 ")
    assert run_cli("audit", "verify").returncode == 0


def test_acknowledge_all_acknowledges_the_earlier_breaks_and_leaves_the_new_one(
        dotagent_home: Path) -> None:
    log = seeded()
    delete_line(log, 3)
    assert run_cli("audit", "verify").returncode == 1  # break 8, not acknowledged yet
    delete_line(log, 5)
    p = run_cli("audit", "acknowledge", "--all")
    assert p.returncode == 1
    assert p.stdout.startswith("acknowledged break 7 ")  # after line 5 went, it is line 7
    assert "recorded just now as break 8" in p.stderr
    assert "break 8 " not in p.stdout


def test_acknowledge_fails_like_verify_on_a_log_it_cannot_check(dotagent_home: Path) -> None:
    seeded(2)
    head = dotagent_home / "state" / "audit.head"
    head.unlink()
    head.mkdir()
    verify = run_cli("audit", "verify")
    p = run_cli("audit", "acknowledge", "--all")
    assert verify.returncode == p.returncode == 1
    assert "records no break" not in p.stderr
    assert p.stderr == verify.stderr == (f"Error: cannot read the head record {head}: it is a "
                                         "directory, not a regular file (move it aside; "
                                         "dotagent creates the file it needs)\n")
