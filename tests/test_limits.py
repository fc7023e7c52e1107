"""`[limits]` (issue 11 item 2, threat model V7): real agents under real rlimits, through the
real CLI (`run-now`, `run`) and once under the real daemon; the reasons a limit gives end up
in `--json`, history, the audit log and the per-agent log."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dotagent.manifest import Limits
from dotagent.runner.limits import WRAPPER, limit_reason, wrap

from helpers import dotagent, write_agent

HOG = ("x = []\n"
       "while True:\n"
       "    x.append(bytearray(8 << 20))\n")


def agent(root: Path, name: str, command: str, args: list[str], limits: str) -> Path:
    return write_agent(root, name, f"""
    [agent]
    name = "{name}"
    timeout_seconds = 60
    [run]
    command = "{command}"
    args = {json.dumps(args)}
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 60
    [limits]
    {textwrap.dedent(limits).strip()}
    """)


@pytest.fixture
def root(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    r = tmp_path / "agents"
    r.mkdir()
    cli_env["DOTAGENT_ROOT"] = str(r)
    return r


def run_now(name: str, env: dict[str, str]) -> dict[str, Any]:
    done = dotagent("run-now", name, "--json", env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["result"]
    return result


def audit_runs(home: Path, name: str) -> list[dict[str, Any]]:
    lines = (home / "audit.log").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    return [e for e in events if e["event_type"] == "agent_run" and e["agent"] == name]


def history(home: Path, name: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{home / 'state' / 'history.sqlite3'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM runs WHERE agent = ? ORDER BY id",
                            (name,)).fetchall()
        return [dict(r) for r in rows]
    finally:
        conn.close()


def agent_log(home: Path, name: str) -> str:
    return (home / "logs" / "agents" / name / f"{name}.log").read_text(errors="replace")


def test_cpu_spinner_is_stopped_by_cpu_seconds_and_the_reason_recorded(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    agent(root, "spin", "/bin/sh", ["-c", "while :; do :; done"], "cpu_seconds = 1")
    result = run_now("spin", cli_env)
    reason = "cpu_seconds limit (1 s) reached (SIGXCPU)"
    assert result["exit_code"] == 128 + 24  # SIGXCPU
    assert result["timed_out"] is False
    assert result["limit"] == reason
    assert result["output_cut"] is False
    assert result["stderr_tail"] == f"[dotagent] {reason}"
    assert result["duration_seconds"] < 30  # stopped by the limit, not the 60 s timeout
    [event] = audit_runs(dotagent_home, "spin")
    assert event["exit_code"] == 152 and event["limit"] == reason
    assert "output_cut" not in event
    [row] = history(dotagent_home, "spin")
    assert row["outcome"] == "failed" and row["exit_code"] == 152
    assert row["stderr_tail"].endswith(f"[dotagent] {reason}")
    assert f"[dotagent] {reason}\n" in agent_log(dotagent_home, "spin")


def test_cpu_spinner_ignoring_sigxcpu_is_killed_at_the_hard_limit(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    agent(root, "stubborn", "/bin/sh", ["-c", "trap '' XCPU; while :; do :; done"],
          "cpu_seconds = 1")
    result = run_now("stubborn", cli_env)
    assert result["exit_code"] == 128 + 9
    assert result["limit"] == ("cpu_seconds limit (1 s) likely reached (SIGKILL at the hard "
                               "limit; or the kernel's OOM killer)")


def test_memory_hog_is_stopped_by_memory_mb_and_recorded(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    agent(root, "hog", sys.executable, ["-c", HOG], "memory_mb = 64")
    result = run_now("hog", cli_env)
    reason = "may have hit memory_mb (64 MB): an allocation failure in its output"
    assert result["exit_code"] == 1
    assert "MemoryError" in result["stderr_tail"]
    assert result["limit"] == reason
    assert result["stderr_tail"].endswith(f"\n[dotagent] {reason}")
    [event] = audit_runs(dotagent_home, "hog")
    assert event["limit"] == reason and event["exit_code"] == 1
    [row] = history(dotagent_home, "hog")
    assert row["outcome"] == "failed" and row["stderr_tail"].endswith(reason)


def test_the_same_hog_without_a_limit_gets_past_64_mb(
        root: Path, cli_env: dict[str, str]) -> None:
    # The control: what stopped the hog above is the limit, not the machine.
    script = "x = [bytearray(8 << 20) for _ in range(24)]\nprint(len(x))\n"
    agent(root, "big", sys.executable, ["-c", script], "max_output_mb = 5")
    result = run_now("big", cli_env)
    assert result["exit_code"] == 0 and result["stdout_tail"] == "24"
    assert result["limit"] is None


def test_a_failure_without_an_allocation_message_is_not_blamed_on_memory(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    agent(root, "plain", "/bin/sh", ["-c", "echo nope >&2; exit 3"], "memory_mb = 64")
    result = run_now("plain", cli_env)
    assert result["exit_code"] == 3 and result["limit"] is None
    assert result["stderr_tail"] == "nope"
    [event] = audit_runs(dotagent_home, "plain")
    assert "limit" not in event


def test_nofile_and_nice_are_what_the_child_sees(
        root: Path, cli_env: dict[str, str]) -> None:
    # The agent is /bin/sh itself; dotagent starts it without a shell.
    agent(root, "probe", "/bin/sh",
          ["-c", "ulimit -n; ulimit -Hn; cut -d' ' -f19 /proc/self/stat"],
          "nofile = 77\nnice = 7")
    result = run_now("probe", cli_env)
    expected_nice = max(7, os.getpriority(os.PRIO_PROCESS, 0))
    assert result["stdout_tail"].splitlines() == ["77", "77", str(expected_nice)]
    assert result["exit_code"] == 0 and result["limit"] is None


def test_foreground_run_applies_the_limits_too(
        root: Path, cli_env: dict[str, str]) -> None:
    agent(root, "fg", "/bin/sh", ["-c", "ulimit -n"], "nofile = 33")
    done = dotagent("run", "fg", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "33"


def test_foreground_run_says_which_limit_stopped_the_agent(
        root: Path, cli_env: dict[str, str]) -> None:
    agent(root, "fgspin", "/bin/sh", ["-c", "while :; do :; done"], "cpu_seconds = 1")
    done = dotagent("run", "fgspin", env=cli_env)
    assert done.returncode == 152
    assert done.stderr == ("[dotagent] agent 'fgspin', schedule 'main': cpu_seconds limit "
                           "(1 s) reached (SIGXCPU) (exit 152)\n")


def test_max_output_mb_cuts_the_log_and_marks_the_run(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    # 3 MiB of 1 KiB lines, then one last line: the log keeps 1 MiB, the tail the end.
    script = ("import sys\nline = 'y' * 1023 + '\\n'\n"
              "for _ in range(3072): sys.stdout.write(line)\nprint('the end')\n")
    agent(root, "loud", sys.executable, ["-c", script], "max_output_mb = 1")
    result = run_now("loud", cli_env)
    assert result["exit_code"] == 0  # not killed: cut in the log only
    assert result["output_cut"] is True and result["limit"] is None
    assert result["stdout_tail"].splitlines()[-1] == "the end"
    assert result["stderr_tail"] == "[dotagent] output cut in the log at [limits] max_output_mb"
    log = agent_log(dotagent_home, "loud")
    kept = log.count("y" * 1023 + "\n")
    assert kept == 1024  # exactly 1 MiB of whole lines
    assert ("[dotagent] output cut: max_output_mb = 1 reached after 1048576 bytes; the rest "
            "of this run's output is not logged\n") in log
    assert "the end" not in log
    assert "run finished · exit=0" in log
    [event] = audit_runs(dotagent_home, "loud")
    assert event["output_cut"] is True and "limit" not in event
    [row] = history(dotagent_home, "loud")
    assert row["outcome"] == "ok"


def test_bad_limits_are_located_errors(root: Path, cli_env: dict[str, str]) -> None:
    d = agent(root, "bad", "/bin/true", [], """
    memory_mb = 0
    cpu_seconds = -1
    nofile = "many"
    nice = 20
    max_output_mb = 1.5
    """)
    done = dotagent("run", "bad", env=cli_env)
    assert done.returncode == 78, done.stderr
    path = d / "agent.toml"
    lines = path.read_text().splitlines()

    def line_of(key: str) -> int:
        return next(i for i, text in enumerate(lines, 1) if text.strip().startswith(f"{key} ="))

    for fieldname, message in [
            ("memory_mb", "0 is not a limit (a whole number of at least 1; leave the key "
                              "out for no limit)"),
            ("cpu_seconds", "-1 is not a limit (a whole number of at least 1; leave the "
                                "key out for no limit)"),
            ("nofile", 'expected an integer, got a string ("many")'),
            ("nice", "20 is out of range (0..19)"),
            ("max_output_mb", "expected an integer, got a float (1.5)")]:
        line = line_of(fieldname)
        assert f"{path}:{line}: limits.{fieldname}: {message}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_limits_beyond_the_ranges_are_clamped_with_a_warning_and_shown_by_doctor(
        root: Path, cli_env: dict[str, str]) -> None:
    d = agent(root, "clamped", "/bin/true", [], """
    memory_mb = 2
    cpu_seconds = 9999999
    nofile = 256
    nice = 5
    """)
    lines = [text.strip() for text in (d / "agent.toml").read_text().splitlines()]
    memory_line = lines.index("memory_mb = 2") + 1
    done = dotagent("doctor", "--json", env=cli_env)
    report = json.loads(done.stdout)
    [m] = [m for m in report["manifests"] if m["name"] == "clamped"]
    assert m["limits"] == {"memory_mb": 16, "cpu_seconds": 604800, "nofile": 256, "nice": 5,
                           "max_output_mb": None}
    warnings = {(w["line"], w["field"], w["message"]) for w in m["warnings"]}
    assert (memory_line, "limits.memory_mb", "2 → 16 (safety limit: 16..1048576)") \
        in warnings
    assert (memory_line + 1, "limits.cpu_seconds",
            "9999999 → 604800 (safety limit: 1..604800)") in warnings
    text = dotagent("doctor", env=cli_env).stdout
    assert ("limits: memory_mb=16 cpu_seconds=604800 nofile=256 nice=5 (as RLIMIT_DATA)"
            in text)
    assert str(d) in text


def test_doctor_limits_are_null_without_the_section(
        root: Path, cli_env: dict[str, str]) -> None:
    write_agent(root, "free", """
    [agent]
    name = "free"
    [run]
    command = "/bin/true"
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 60
    """)
    report = json.loads(dotagent("doctor", "--json", env=cli_env).stdout)
    [m] = report["manifests"]
    assert m["limits"] == {"memory_mb": None, "cpu_seconds": None, "nofile": None,
                           "nice": None, "max_output_mb": None}
    assert "limits:" not in dotagent("doctor", env=cli_env).stdout


def test_wrap_leaves_a_run_without_rlimits_alone() -> None:
    argv = ["tool", "a"]
    assert wrap(argv, "/bin/tool", None) == (argv, "/bin/tool")
    assert wrap(argv, "/bin/tool", Limits(max_output_mb=3)) == (argv, "/bin/tool")
    wrapped, exe = wrap(argv, "/bin/tool", Limits(cpu_seconds=2, nice=1))
    assert exe == sys.executable
    assert wrapped == [sys.executable, "-I", "-S", str(WRAPPER), "cpu=2,nice=1", "/bin/tool",
                       "tool", "a"]


def test_a_limit_that_cannot_be_set_stops_the_run_before_the_agent(tmp_path: Path) -> None:
    import subprocess

    marker = tmp_path / "ran"
    # A value setrlimit cannot take (here one that is not a number; the manifest never
    # produces it, but an exhausted kernel or a privilege limit fails the same path): the
    # wrapper says so and does not exec the agent.
    done = subprocess.run([sys.executable, "-I", "-S", str(WRAPPER), "nofile=16,cpu=lots",
                           "/bin/sh", "sh", "-c", f"touch {marker}"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 126
    assert done.stderr.startswith("[dotagent] cannot apply [limits] cpu = lots: ")
    assert not marker.exists()


def test_limit_reason_heuristics() -> None:
    lim = Limits(memory_mb=100, cpu_seconds=5)
    def why(rc: int, tail: str = "", ok: bool = False, stopped: bool = False) -> str | None:
        v = limit_reason(lim, returncode=rc, exit_ok=ok, stopped_by_dotagent=stopped,
                         stderr_tail=tail)
        return None if v is None else v.reason
    assert why(-24) == "cpu_seconds limit (5 s) reached (SIGXCPU)"
    assert why(-9, stopped=True) is None  # dotagent's own kill (timeout, stop)
    assert why(-11) == "may have hit memory_mb (100 MB): killed by SIGSEGV"
    assert why(-6) == "may have hit memory_mb (100 MB): killed by SIGABRT"
    assert why(2, "fatal error: runtime: out of memory") == \
        "may have hit memory_mb (100 MB): an allocation failure in its output"
    assert why(0, "MemoryError", ok=True) is None
    assert why(1, "permission denied") is None
    assert limit_reason(None, returncode=-24, exit_ok=False, stopped_by_dotagent=False,
                        stderr_tail="") is None


def test_limits_hold_inside_the_sandbox_too(root: Path, cli_env: dict[str, str]) -> None:
    """A confined agent (`network = "deny"`: real bwrap) still gets its limits: the limits
    wrapper runs outside bwrap and they carry across both execs; the cpu limit is still
    named when it ends the run."""
    agent(root, "boxed", "/bin/sh", ["-c", "ulimit -n; cut -d' ' -f19 /proc/self/stat"],
          "nofile = 55\nnice = 5\n[security]\nnetwork = \"deny\"")
    result = run_now("boxed", cli_env)
    expected_nice = max(5, os.getpriority(os.PRIO_PROCESS, 0))
    assert result["stdout_tail"].splitlines() == ["55", str(expected_nice)], result
    agent(root, "boxspin", "/bin/sh", ["-c", "while :; do :; done"],
          "cpu_seconds = 1\n[security]\nnetwork = \"deny\"")
    spun = run_now("boxspin", cli_env)
    assert spun["limit"] is not None and spun["limit"].startswith("cpu_seconds limit (1 s)")
