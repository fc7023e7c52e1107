"""supervisor.json and the boot-time orphan sweep, against real processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dotagent.atomicfile import dump_json
from dotagent.audit.events import OrphanReaped, Severity
from dotagent.errors import StateError
from dotagent.paths import Home
from dotagent.state import supervisor as sv
from dotagent.state.supervisor import (
    ProcessFacts,
    ProcessInfo,
    ProcessOwner,
    SupervisorSnapshot,
    command_matches,
    parse_ps_line,
    sweep_orphans,
)

from conftest import REPO

OWN = os.getpid()


def _state(pid: int) -> str | None:
    """The process state letter from /proc, None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    return raw[raw.rindex(b")") + 2:].split()[0].decode()


def running(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # the group, when it has its own
            p.kill()
            p.wait(timeout=10)


def spawn(procs: list[subprocess.Popen[bytes]], argv: list[str], *, own_group: bool = True,
          ready: bool = False) -> tuple[subprocess.Popen[bytes], datetime]:
    p = subprocess.Popen(argv, process_group=0 if own_group else None,
                         stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE if ready else subprocess.DEVNULL)
    started = datetime.now(UTC)
    procs.append(p)
    # Popen returns when exec closes the error pipe, which the kernel does a moment before it
    # sets up the new argv: wait (with a deadline) until /proc shows the new command line.
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{p.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.001)
    if ready:
        assert p.stdout is not None and p.stdout.readline().strip()
    return p, started


def info(pid: int, started: datetime, command: str, *, pgid: int | None = -1,
         kind: str = "agent", deadline: int = 600) -> ProcessInfo:
    return ProcessInfo(id=7, pid=pid, kind=kind,
                       owner=ProcessOwner(agent="report", schedule="daily"),
                       label="report.daily", started_at=started, deadline_seconds=deadline,
                       pgid=pid if pgid == -1 else pgid, command=command)


def snapshot(home: Path, *records: ProcessInfo) -> Path:
    writer = SupervisorSnapshot(Home(home))
    writer.write(list(records))
    return writer.path


def sweep(home: Path, **kw: object) -> sv.OrphanSweep:
    kw.setdefault("grace", 0.2)
    return sweep_orphans(Home(home), OWN, datetime.now(UTC), **kw)  # type: ignore[arg-type]


# -- the file ---------------------------------------------------------------------------
def test_snapshot_is_upstreams_shape(tmp_path: Path) -> None:
    started = datetime(2026, 8, 6, 13, 15, 0, 123456, tzinfo=UTC)
    record = info(3980, started, "fish /agents/x/agent.fish").aged(started + timedelta(
        seconds=47.9))
    writer = SupervisorSnapshot(Home(tmp_path), zone=ZoneInfo("America/Sao_Paulo"))
    assert writer.write([record]) is True
    text = writer.path.read_text()
    assert not text.endswith("\n") and text.startswith("[\n  {\n    \"id\": 7,")
    data = json.loads(text)
    assert list(data[0]) == ["id", "pid", "kind", "owner", "label", "started_at",
                             "deadline_seconds", "age_seconds", "deadline_pct", "pgid",
                             "command"]
    assert data[0]["owner"] == {"agent": "report", "schedule": "daily"}  # absent keys left out
    assert data[0]["started_at"] == "2026-08-06T10:15:00.123456-03:00"
    assert (data[0]["age_seconds"], data[0]["deadline_pct"]) == (47, 7)
    assert stat.S_IMODE(writer.path.stat().st_mode) == 0o600
    assert writer.read() == [record]
    assert writer.write([record]) is False  # unchanged: not rewritten
    assert writer.write([]) is True and writer.path.read_text() == "[]"
    writer.delete()
    assert not writer.path.exists() and writer.read() == []
    writer.delete()  # already gone is fine


def test_records_written_by_upstream_parse() -> None:
    old = ProcessInfo.from_json({  # before 0.3: no pgid, no command
        "id": 1, "pid": 2115, "kind": "persistent_agent",
        "owner": {"agent": "telegram-assistant"}, "label": "telegram-assistant.persistent[42]",
        "started_at": "2026-08-07T19:44:33-03:00", "deadline_seconds": 600,
        "age_seconds": 1600, "deadline_pct": 100})
    assert (old.pgid, old.command, old.kind_display) == (None, "", "persistent")
    new = ProcessInfo.from_json({
        "id": 42, "pid": 3980, "kind": "sink", "owner": {"agent": "a", "hook_event": "success",
                                                         "plugin": "roam"},
        "label": "sink-roam.invoke", "started_at": "2026-08-07T19:44:33.123456789+00:00",
        "deadline_seconds": 30, "age_seconds": 2, "deadline_pct": 6, "pgid": 3980,
        "command": "dotagent-plugin-roam invoke"})
    assert new.started_at == datetime(2026, 8, 7, 19, 44, 33, 123456, tzinfo=UTC)
    assert new.owner == ProcessOwner(agent="a", hook_event="success", plugin="roam")
    for bad in ({"pid": 1}, [], {"id": 1, "pid": -3}, {
            "id": 1, "pid": 5, "kind": "agent", "owner": {"agent": "a"}, "label": "l",
            "started_at": "2026-08-07T19:44:33", "deadline_seconds": 1}):  # naive time
        with pytest.raises(ValueError):
            ProcessInfo.from_json(bad)


def test_a_snapshot_that_cannot_be_written_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(StateError, match=r"supervisor\.json"):
        SupervisorSnapshot(Home(tmp_path)).write([])


def test_orphan_reaped_takes_the_result_fields() -> None:
    result = sv.OrphanResult("reaped", info(10, datetime.now(UTC), "x", kind="persistent_agent"),
                             age_seconds=12)
    event = OrphanReaped(**result.event_fields())
    assert event.severity is Severity.CRITICAL
    assert event.fields() == {"event_type": "orphan_reaped", "agent": "report",
                              "kind": "persistent", "label": "report.daily", "pid": 10,
                              "age_seconds": 12, "deadline_seconds": 600}


# -- reaping real processes -------------------------------------------------------------
def test_an_orphaned_group_is_reaped(tmp_path: Path, procs: list[subprocess.Popen[bytes]]
                                     ) -> None:
    leader_argv = [sys.executable, "-c", _LEADER_CODE]
    leader, started = spawn(procs, leader_argv)
    sleeper, sleeper_started = spawn(procs, ["sleep", "1000"])
    child_pid = _wait_for_child(leader.pid)  # in the leader's group
    snapshot(tmp_path, info(leader.pid, started, sv.render_command(leader_argv)),
             info(sleeper.pid, sleeper_started, "sleep 1000"))
    result = sweep(tmp_path)
    assert sorted((r.outcome, r.pid) for r in result.results) == sorted(
        [("reaped", leader.pid), ("reaped", sleeper.pid)])
    assert [r.agent for r in result.reaped] == ["report", "report"]
    assert leader.wait(timeout=10) == -signal.SIGTERM
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while running(child_pid) and time.monotonic() < deadline:  # the whole group got TERM
        time.sleep(0.01)
    assert not running(child_pid)
    assert not (tmp_path / "state/supervisor.json").exists()  # deleted after the sweep


_LEADER_CODE = ("import subprocess, time; c = subprocess.Popen(['sleep', '1000']); "
                "print(c.pid, flush=True); time.sleep(1000)")


def _wait_for_child(pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = children.read_text().split() if children.exists() else []
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise AssertionError("the leader did not start its child")


def test_a_group_ignoring_sigterm_gets_sigkill(tmp_path: Path,
                                                procs: list[subprocess.Popen[bytes]]) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(1000)")
    argv = [sys.executable, "-c", code]
    p, started = spawn(procs, argv, ready=True)
    snapshot(tmp_path, info(p.pid, started, sv.render_command(argv)))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(min(seconds, 0.05))

    result = sweep(tmp_path, grace=5.0, sleep=sleep)
    assert [r.outcome for r in result.results] == ["reaped"]
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert slept[0] == 5.0 and slept.count(5.0) == 1


def test_one_grace_period_for_all_groups(tmp_path: Path,
                                         procs: list[subprocess.Popen[bytes]]) -> None:
    records = []
    for _ in range(3):
        p, started = spawn(procs, ["sleep", "1000"])
        records.append(info(p.pid, started, "sleep 1000"))
    snapshot(tmp_path, *records)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(min(seconds, 0.05))

    result = sweep(tmp_path, grace=5.0, sleep=sleep)
    assert [r.outcome for r in result.results] == ["reaped"] * 3
    assert slept.count(5.0) == 1


@pytest.mark.parametrize("shift", [timedelta(seconds=-60), timedelta(seconds=-1.5),
                                   timedelta(seconds=10), timedelta(hours=3)])
def test_a_recycled_pid_is_never_killed(tmp_path: Path, procs: list[subprocess.Popen[bytes]],
                                        shift: timedelta) -> None:
    """The recorded start does not match the process now holding the pid."""
    p, started = spawn(procs, ["sleep", "1000"])
    snapshot(tmp_path, info(p.pid, started + shift, "sleep 1000"))
    result = sweep(tmp_path)
    assert [r.outcome for r in result.results] == ["start_time_mismatch"]
    assert running(p.pid) and p.poll() is None


@pytest.mark.parametrize("recorded", ["sleep 999", "/usr/bin/vim /agents/x/sleep.py",
                                      "bash /agents/x/run.sh"])
def test_a_different_command_is_never_killed(tmp_path: Path,
                                             procs: list[subprocess.Popen[bytes]],
                                             recorded: str) -> None:
    p, started = spawn(procs, ["sleep", "1000"])
    snapshot(tmp_path, info(p.pid, started, recorded))
    assert [r.outcome for r in sweep(tmp_path).results] == ["command_mismatch"]
    assert running(p.pid)


def _exec_agent(procs: list[subprocess.Popen[bytes]], marks: dict[str, str]
                ) -> tuple[subprocess.Popen[bytes], datetime]:
    """An agent whose script `exec`s another program: the pid, group and start stay, the
    command line does not; the run's marks stay in its environment."""
    env = {**os.environ, **marks}
    p = subprocess.Popen(["/bin/sh", "-c", "exec sleep 1000"], process_group=0,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    started = datetime.now(UTC)
    procs.append(p)
    deadline = time.monotonic() + 10
    while b"sleep" not in Path(f"/proc/{p.pid}/cmdline").read_bytes() \
            and time.monotonic() < deadline:
        time.sleep(0.001)
    return p, started


def test_an_agent_that_execs_another_program_is_reaped_by_its_marks(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    epoch = str(int(time.time()))
    p, started = _exec_agent(procs, {"AGENT_NAME": "report", "AGENT_SCHEDULE_ID": "daily",
                                     "AGENT_START_EPOCH": epoch})
    snapshot(tmp_path, info(p.pid, started, "/agents/report/run.sh --full"))
    assert [r.outcome for r in sweep(tmp_path).results] == ["reaped"]
    assert p.wait(timeout=10) == -signal.SIGTERM


@pytest.mark.parametrize("marks", [
    {"AGENT_NAME": "other", "AGENT_SCHEDULE_ID": "daily"},  # another agent's run
    {"AGENT_NAME": "report", "AGENT_SCHEDULE_ID": "weekly"},  # another schedule's
    {"AGENT_NAME": "report", "AGENT_SCHEDULE_ID": "daily", "shift": "-3600"},  # another run
    {"AGENT_NAME": "report", "AGENT_SCHEDULE_ID": "daily", "AGENT_START_EPOCH": "soon"},
    {},  # no marks at all: a stranger's program
])
def test_marks_of_another_run_do_not_make_a_different_command_ours(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]], marks: dict[str, str]) -> None:
    marks = dict(marks)
    shift = int(marks.pop("shift", "0"))
    if marks:
        marks.setdefault("AGENT_START_EPOCH", str(int(time.time()) + shift))
    p, started = _exec_agent(procs, marks)
    snapshot(tmp_path, info(p.pid, started, "/agents/report/run.sh --full"))
    assert [r.outcome for r in sweep(tmp_path).results] == ["command_mismatch"]
    assert running(p.pid)


def test_a_plugin_record_is_never_matched_by_marks(tmp_path: Path,
                                                   procs: list[subprocess.Popen[bytes]]
                                                   ) -> None:
    p, started = _exec_agent(procs, {"AGENT_NAME": "report", "AGENT_SCHEDULE_ID": "daily",
                                     "AGENT_START_EPOCH": str(int(time.time()))})
    snapshot(tmp_path, info(p.pid, started, "/usr/bin/dotagent-plugin-x invoke", kind="sink"))
    assert [r.outcome for r in sweep(tmp_path).results] == ["command_mismatch"]
    assert running(p.pid)


def test_records_that_prove_nothing_are_left_alone(tmp_path: Path,
                                                   procs: list[subprocess.Popen[bytes]]
                                                   ) -> None:
    in_group, started = spawn(procs, ["sleep", "1000"])
    not_leader, started2 = spawn(procs, ["sleep", "1001"], own_group=False)
    gone = subprocess.Popen(["true"])
    gone.wait()
    now = datetime.now(UTC)
    path = snapshot(
        tmp_path,
        info(in_group.pid, started, "sleep 1000", pgid=in_group.pid + 1),  # pgid != pid
        info(in_group.pid, started, "sleep 1000", pgid=None),  # written before 0.3
        info(in_group.pid, started, ""),  # no command
        info(not_leader.pid, started2, "sleep 1001"),  # really in our group, not its own
        info(gone.pid, now, "true"),
        info(OWN, now, "python"),
        info(1, now, "init"),
    )
    data = json.loads(path.read_text())
    path.write_text(json.dumps([{"what": "garbage"}, *data]))
    result = sweep(tmp_path)
    assert [r.outcome for r in result.results] == [
        "unusable_record", "ambiguous_record", "ambiguous_record", "ambiguous_record",
        "not_group_leader", "already_gone", "unusable_record", "unusable_record"]
    assert result.results[0].record is None and "record 0" in result.results[0].detail
    assert running(in_group.pid) and running(not_leader.pid)


def test_a_corrupt_snapshot_is_moved_aside_and_nothing_is_signalled(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    p, _ = spawn(procs, ["sleep", "1000"])
    path = tmp_path / "state/supervisor.json"
    path.parent.mkdir(parents=True)
    for content in (b'[{"id": 1, "pid": %d' % p.pid, b'{"not": "an array"}', b"\xff"):
        path.write_bytes(content)
        result = sweep(tmp_path)
        assert result.results == [] and result.snapshot_error
        assert result.corrupt_path == path.with_name("supervisor.json.corrupt")
        assert result.corrupt_path.read_bytes() == content and not path.exists()
    assert running(p.pid)
    assert sweep(tmp_path).results == []  # no file: nothing to do


def test_another_live_daemon_keeps_its_snapshot(tmp_path: Path,
                                                procs: list[subprocess.Popen[bytes]]) -> None:
    other, _ = spawn(procs, ["sleep", "1000"])
    victim, started = spawn(procs, ["sleep", "1002"])
    path = snapshot(tmp_path, info(victim.pid, started, "sleep 1002"))
    (tmp_path / "state/daemon.pid").write_text(str(other.pid))
    result = sweep(tmp_path)
    assert result.not_run == f"another daemon (pid {other.pid}) is running"
    assert path.exists() and running(victim.pid)
    (tmp_path / "state/daemon.pid").write_text(str(OWN))  # our own pid file: sweep
    assert [r.outcome for r in sweep(tmp_path).results] == ["reaped"]


# -- the decision, with the OS faked ----------------------------------------------------
def test_identity_changing_during_the_grace_is_not_escalated(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    record = info(999_999, started, "sleep 1000")
    snapshot(tmp_path, record)
    answers = [ProcessFacts(999_999, started.timestamp(), "sleep 1000"),
               ProcessFacts(999_999, started.timestamp() + 30, "postgres -D /var/db")]
    kills: list[tuple[int, int]] = []
    result = sweep(tmp_path, probe=lambda pid: answers.pop(0),
                   kill=lambda pgid, sig: kills.append((pgid, sig)), sleep=lambda s: None)
    assert [(r.outcome, r.detail) for r in result.results] == [
        ("survived", "identity changed during the grace period: start_time_mismatch")]
    assert kills == [(999_999, signal.SIGTERM)]


def test_a_refused_signal_is_survived_not_reaped(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    snapshot(tmp_path, info(999_998, started, "sleep 1000"))

    def refuse(pgid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    result = sweep(tmp_path, kill=refuse,
                   probe=lambda pid: ProcessFacts(pid, started.timestamp(), "sleep 1000"))
    assert [(r.outcome, r.detail) for r in result.results] == [
        ("survived", "SIGTERM failed: Operation not permitted")]


def test_start_time_tolerance_is_five_seconds_earlier_one_later() -> None:
    started = datetime(2026, 8, 6, 12, 0, tzinfo=UTC)
    record = info(500, started, "sleep 1000")
    for offset, verdict in [(0, "reap"), (-5, "reap"), (-5.01, "start_time_mismatch"),
                            (1, "reap"), (1.01, "start_time_mismatch")]:
        facts = ProcessFacts(500, started.timestamp() + offset, "sleep 1000")
        assert sv.classify(record, facts, OWN) == verdict, offset


@pytest.mark.parametrize(("recorded", "observed", "match"), [
    ("fish /agents/x/agent.fish", "fish /agents/x/agent.fish", True),
    ("/usr/bin/env python3 /agents/x/agent.py", "python3 /agents/x/agent.py", True),
    ("/usr/bin/python3 agent.py --x", "python3 agent.py --x", True),
    ("sleep 120", "sleep 120", True),
    ("sleep 120", "sleep 121", False),
    ("fish /agents/x/agent.fish", "fish", False),  # the login shell
    ("fish /agents/a/agent.fish", "fish /agents/b/agent.fish", False),
    ("python3 /agents/a/agent.py", "vim /agents/a/agent.py", False),
    ("node /agents/a/index.js", "node /agents/a/index.jsx", False),  # whole tokens only
    ("", "sleep 1", False),
])
def test_command_rule(recorded: str, observed: str, match: bool) -> None:
    assert command_matches(recorded, observed) is match


def test_a_shebang_script_matches_through_its_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh -e\nsleep 1000\n")
    script.chmod(0o755)
    recorded = f"{script} --period x"
    assert command_matches(recorded, f"/bin/sh -e {script} --period x")
    assert command_matches(recorded, f"sh {script} --period x")
    assert not command_matches(recorded, f"vim {script} --period x")  # not on the #! line
    assert not command_matches(recorded, f"/bin/sh {script} --period y")
    env_script = tmp_path / "agent.py"
    env_script.write_text("#!/usr/bin/env python3\n")
    assert command_matches(str(env_script), f"python3 {env_script}")


def test_a_real_shebang_agent_is_reaped(tmp_path: Path,
                                        procs: list[subprocess.Popen[bytes]]) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho ready\nexec sleep 1000 &\nwait\n")
    script.chmod(0o755)
    p, started = spawn(procs, [str(script), "--period", "x"], ready=True)
    facts = sv.probe_process(p.pid)
    assert isinstance(facts, ProcessFacts) and facts.command.startswith("/bin/sh ")
    snapshot(tmp_path, info(p.pid, started, sv.render_command([str(script), "--period", "x"])))
    assert [r.outcome for r in sweep(tmp_path).results] == ["reaped"]


# -- probing --------------------------------------------------------------------------
def test_proc_and_ps_agree(procs: list[subprocess.Popen[bytes]]) -> None:
    p, started = spawn(procs, ["sleep", "1000"])
    from_proc = sv._probe_proc(p.pid, Path("/proc"))
    from_ps = sv._probe_ps(p.pid)
    assert isinstance(from_proc, ProcessFacts) and isinstance(from_ps, ProcessFacts)
    assert (from_proc.pgid, from_proc.command) == (from_ps.pgid, from_ps.command) == (
        p.pid, "sleep 1000")
    # ps prints whole seconds, computed from /proc/stat's whole-second boot time: it can be
    # up to two seconds behind /proc's exact start (never ahead by more than rounding).
    assert -0.05 <= from_proc.started_at - from_ps.started_at < 2
    assert -1 <= started.timestamp() - from_proc.started_at <= 5
    p.kill()
    p.wait()  # reaped: the pid is free
    assert sv._probe_proc(p.pid, Path("/proc")) == sv.GONE
    assert sv._probe_ps(p.pid) == sv.GONE


def test_a_zombie_counts_as_gone(procs: list[subprocess.Popen[bytes]]) -> None:
    p, _ = spawn(procs, ["true"])
    deadline = time.monotonic() + 10
    while _state(p.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _state(p.pid) == "Z"
    assert sv.probe_process(p.pid) == sv.GONE


def test_ps_lines_parse_in_local_time() -> None:
    sp = ZoneInfo("America/Sao_Paulo")
    facts = parse_ps_line("  497   Fri Aug  7 05:30:03 2026 /bin/zsh -c echo hi", sp)
    assert facts is not None and facts.pgid == 497 and facts.command == "/bin/zsh -c echo hi"
    assert facts.started_at == datetime(2026, 8, 7, 5, 30, 3, tzinfo=sp).timestamp()
    ny = ZoneInfo("America/New_York")
    assert parse_ps_line("1 Sun Nov  1 01:30:00 2026 sleep 1", ny) is None  # ambiguous
    assert parse_ps_line("1 Sun Mar  8 02:30:00 2026 sleep 1", ny) is None  # does not exist
    assert parse_ps_line("1 Sun Mar  8 03:30:00 2026 sleep 1", ny) is not None
    for bad in ("", "x Fri Aug 7 05:30:03 2026 a", "1 Fri Foo 7 05:30:03 2026 a",
                "1 Fri Aug 7 25:30:03 2026 a"):
        assert parse_ps_line(bad) is None


def test_the_example_in_docs_is_what_we_write() -> None:
    doc = (REPO / "docs" / "state.md").read_text()
    example = re.findall(r"```json\n(.*?)\n```", doc, re.S)[1]
    record = ProcessInfo.from_json(json.loads(example))
    assert dump_json(record.to_json(ZoneInfo("America/Sao_Paulo"))) == example
