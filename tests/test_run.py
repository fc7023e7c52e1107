"""`dotagent run` end to end, with real subprocesses and a real DOTAGENT_HOME."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent, write_agent

PY = sys.executable

DUMP_ENV = """
import json, os, sys
out = os.environ["OUT"]
with open(out, "w") as fh:
    json.dump({"env": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd(),
               "tmp_exists": os.path.isdir(os.environ.get("AGENT_TMPDIR", ""))}, fh)
"""


@pytest.fixture
def root(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    r = tmp_path / "agents"
    r.mkdir()
    cli_env["DOTAGENT_ROOT"] = str(r)
    return r


def dump_agent(root: Path, out: Path, *, inherit: bool = True, dry: bool = False,
               working_dir: str | None = None) -> Path:
    wd = f'working_dir = "{working_dir}"' if working_dir else ""
    return write_agent(root, "envdump", f"""
        [agent]
        name = "envdump"
        [run]
        command = "{PY}"
        args = ["dump.py", "static arg"]
        {wd}
        [env]
        inherit = {"true" if inherit else "false"}
        extra = {{ OUT = "{out}", AGENT_NAME = "spoofed" }}
        [[schedules]]
        id = "evening"
        type = "cron"
        weekdays = [0]
        hours = [20]
        args = ["--period", "dia-anterior", "ünï"]
        """, files={"dump.py": DUMP_ENV})


def run(cli_env: dict[str, str], *args: str) -> tuple[int, str, str]:
    p = dotagent("run", *args, env=cli_env)
    return p.returncode, p.stdout, p.stderr


def test_env_contract(root: Path, tmp_path: Path, cli_env: dict[str, str],
                      dotagent_home: Path) -> None:
    out = tmp_path / "out.json"
    d = dump_agent(root, out)
    cli_env["FROM_PARENT"] = "kept"
    before = time.time()
    code, _, err = run(cli_env, "envdump", "--schedule", "evening")
    assert code == 0, err
    got = json.loads(out.read_text())
    env = got["env"]
    hb = dotagent_home / "state/agents/envdump/period_dia-anterior_n.heartbeat.json"
    assert env["AGENT_NAME"] == "envdump"  # AGENT_* override [env].extra
    assert env["AGENT_SCHEDULE_ID"] == "evening"
    assert env["AGENT_SLUG"] == "period_dia-anterior_n"
    assert env["AGENT_HOME"] == str(d)
    assert env["AGENT_DRY_RUN"] == "false"
    assert int(before) <= int(env["AGENT_START_EPOCH"]) <= time.time()
    assert env["AGENT_ARGV"] == '["--period","dia-anterior","ünï"]'
    assert env["AGENT_HEARTBEAT_FILE"] == str(hb)
    assert env["FROM_PARENT"] == "kept"
    assert env["OUT"] == str(out)
    assert got["tmp_exists"] is True
    assert not Path(env["AGENT_TMPDIR"]).exists()  # removed after the run
    assert got["argv"] == ["dump.py", "static arg", "--period", "dia-anterior", "ünï"]
    assert got["cwd"] == str(d)  # default working_dir: the manifest's directory


def test_inherit_false_clears_env_but_command_is_still_found(root: Path, tmp_path: Path,
                                                             cli_env: dict[str, str]) -> None:
    out = tmp_path / "out.json"
    dump_agent(root, out, inherit=False)
    write_agent(root, "envdump", (root / "envdump/agent.toml").read_text().replace(
        f'command = "{PY}"', f'command = "{Path(PY).name}"'))
    cli_env["PATH"] = f"{Path(PY).parent}{os.pathsep}{cli_env['PATH']}"
    cli_env["FROM_PARENT"] = "must not leak"
    code, _, err = run(cli_env, "envdump", "-s", "evening")
    assert code == 0, err
    env = json.loads(out.read_text())["env"]
    assert "FROM_PARENT" not in env and "PATH" not in env
    assert set(env) >= {"OUT", "AGENT_NAME", "AGENT_TMPDIR"}


def test_dry_run(root: Path, tmp_path: Path, cli_env: dict[str, str],
                 dotagent_home: Path) -> None:
    out = tmp_path / "out.json"
    dump_agent(root, out)
    code, _, err = run(cli_env, "envdump", "--schedule", "evening", "--dry-run")
    assert code == 0, err
    env = json.loads(out.read_text())["env"]
    assert env["AGENT_DRY_RUN"] == "true"
    assert "AGENT_HEARTBEAT_FILE" not in env
    assert not (dotagent_home / "state" / "agents").exists()  # no heartbeat in dry-run
    assert not Path(env["AGENT_TMPDIR"]).exists()
    log = (dotagent_home / "logs/agents/envdump/envdump.log").read_text()
    assert "run started · schedule=evening · slug=period_dia-anterior_n ===" in log
    assert "dry-run ===" in log


def test_working_dir_relative_to_manifest(root: Path, tmp_path: Path,
                                          cli_env: dict[str, str]) -> None:
    out = tmp_path / "out.json"
    d = dump_agent(root, out, working_dir="sub")
    (d / "sub").mkdir()
    (d / "sub" / "dump.py").write_text(DUMP_ENV)
    code, _, err = run(cli_env, "envdump", "-s", "evening")
    assert code == 0, err
    assert json.loads(out.read_text())["cwd"] == str(d / "sub")


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_code_passthrough(root: Path, cli_env: dict[str, str], code: int) -> None:
    simple_agent(root, "exiter", PY, ["-c", f"import sys; sys.exit({code})"])
    assert run(cli_env, "exiter")[0] == code


def test_killed_by_signal_is_128_plus_n(root: Path, cli_env: dict[str, str]) -> None:
    simple_agent(root, "selfkill", PY, ["-c", "import os, signal; "
                                        "os.kill(os.getpid(), signal.SIGUSR1)"])
    assert run(cli_env, "selfkill")[0] == 128 + signal.SIGUSR1


def test_output_streams_and_log(root: Path, cli_env: dict[str, str],
                                dotagent_home: Path) -> None:
    simple_agent(root, "talker", "sh", ["-c", "echo one; echo two >&2; printf 'three'"])
    code, out, err = run(cli_env, "talker")
    assert code == 0
    assert out == "one\nthree"
    assert err == "two\n"
    log = (dotagent_home / "logs/agents/talker/talker.log").read_text()
    body = log.split("===\n", 1)[1]
    assert body.startswith("one\n")
    assert "[stderr] two\n" in body and "three\n" in body
    assert "run finished · exit=0" in log


def test_shell_metacharacters_stay_literal(root: Path, tmp_path: Path,
                                           cli_env: dict[str, str]) -> None:
    marker = tmp_path / "pwned"
    nasty = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "a && b", "*", "|"]
    simple_agent(root, "literal", PY,
                 ["-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *nasty],
                 schedule_args=[f"> {marker}"])
    code, out, err = run(cli_env, "literal")
    assert code == 0, err
    assert json.loads(out) == [*nasty, f"> {marker}"]
    assert not marker.exists()


def test_heartbeat_shapes_success_then_failure(root: Path, tmp_path: Path,
                                               cli_env: dict[str, str],
                                               dotagent_home: Path) -> None:
    flag = tmp_path / "fail"
    simple_agent(root, "flaky", PY, ["-c", f"import os, sys; sys.exit(3 if os.path.exists("
                                     f"{str(flag)!r}) else 0)"])
    hb_path = dotagent_home / "state/agents/flaky/default.heartbeat.json"
    assert run(cli_env, "flaky")[0] == 0
    text = hb_path.read_text()
    assert not text.endswith("\n")
    first = json.loads(text)
    assert list(first) == ["name", "slug", "args", "started_at", "started_at_iso",
                           "finished_at", "finished_at_iso", "exit_code", "duration_seconds",
                           "last_success_at", "last_success_at_iso"]
    assert first["exit_code"] == 0 and first["last_success_at"] == first["finished_at"]
    assert first["name"] == "flaky" and first["slug"] == "default" and first["args"] == []
    assert len(first["started_at_iso"]) == 24  # 2026-05-19T14:30:01-0300
    flag.touch()
    assert run(cli_env, "flaky")[0] == 3
    second = json.loads(hb_path.read_text())
    assert second["exit_code"] == 3
    assert second["last_success_at"] == first["last_success_at"]  # preserved on failure
    assert second["last_success_at_iso"] == first["last_success_at_iso"]
    assert second["finished_at"] >= first["finished_at"]


def test_heartbeat_marks_a_run_in_progress(root: Path, tmp_path: Path,
                                           cli_env: dict[str, str],
                                           dotagent_home: Path) -> None:
    """While the agent runs, finished fields are null (the crash marker)."""
    snapshot = tmp_path / "during.json"
    simple_agent(root, "peek", "sh", ["-c", f'cat "$AGENT_HEARTBEAT_FILE" > {snapshot}'])
    assert run(cli_env, "peek")[0] == 0
    during = json.loads(snapshot.read_text())
    assert during["finished_at"] is None and during["exit_code"] is None
    assert during["started_at"] > 0


def test_command_not_found_is_127(root: Path, cli_env: dict[str, str],
                                  dotagent_home: Path) -> None:
    simple_agent(root, "ghost", "no-such-command-xyz", [])
    code, _, err = run(cli_env, "ghost")
    assert code == 127
    assert "command not found: no-such-command-xyz" in err
    assert "Traceback" not in err
    hb = json.loads((dotagent_home / "state/agents/ghost/default.heartbeat.json").read_text())
    assert hb["exit_code"] == 127 and hb["finished_at"] is not None


def test_not_executable_is_126(root: Path, cli_env: dict[str, str]) -> None:
    d = simple_agent(root, "noexec", "./script.sh", [])
    (d / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (d / "script.sh").chmod(0o644)
    code, _, err = run(cli_env, "noexec")
    assert code == 126 and "is not executable" in err


def test_bad_working_dir_is_a_failed_run(root: Path, cli_env: dict[str, str]) -> None:
    simple_agent(root, "nowd", "true", [], extra="")
    path = root / "nowd/agent.toml"
    path.write_text(path.read_text().replace("[run]", '[run]\nworking_dir = "missing"'))
    code, _, err = run(cli_env, "nowd")
    assert code == 126 and "working_dir" in err and "does not exist" in err


def test_unknown_agent_and_schedule_list_what_exists(root: Path,
                                                     cli_env: dict[str, str]) -> None:
    simple_agent(root, "alpha", "true", [])
    code, _, err = run(cli_env, "beta")
    assert code == 66  # EX_NOINPUT (S15.10)
    assert err == "Error: agent not found: 'beta' (known agents: 'alpha')\n"
    code, _, err = run(cli_env, "alpha", "--schedule", "nope")
    assert code == 66
    assert err == "Error: schedule id not found: 'nope' (agent 'alpha' has: 'main')\n"


def test_path_traversal_names_refused_nothing_written_outside(root: Path, tmp_path: Path,
                                                              cli_env: dict[str, str],
                                                              dotagent_home: Path) -> None:
    before = {p for p in tmp_path.rglob("*")}
    write_agent(root, "evil", """
        [agent]
        name = "../../escape"
        [run]
        command = "true"
        [[schedules]]
        id = "../../../x"
        type = "interval"
        interval_minutes = 5
        """)
    code, _, err = run(cli_env, "../../escape")
    # The broken manifest holds the name it declares: refused with its own errors (S15.8).
    assert code == 78 and "Error: agent '../../escape' cannot be used" in err
    assert "schedules[0].id: '../../../x' contains '/'" in err
    doctor = dotagent("doctor", env=cli_env)
    assert doctor.returncode == 1
    assert "agent.name: '../../escape' contains '/'" in doctor.stdout
    assert "schedules[0].id: '../../../x' contains '/'" in doctor.stdout
    after = {p for p in tmp_path.rglob("*")}
    new = {p for p in after - before if not p.is_relative_to(dotagent_home)}
    assert new == {root / "evil", root / "evil/agent.toml"}


def test_long_running_background_child_does_not_block_the_run(root: Path,
                                                              cli_env: dict[str, str]) -> None:
    """The main process exits at once; a grandchild keeps stdout open for 30 s. The run must
    end within the grace period, not after 30 s."""
    simple_agent(root, "bg", "sh", ["-c", "sleep 30 & echo started"])
    t0 = time.monotonic()
    code, out, _ = run(cli_env, "bg")
    elapsed = time.monotonic() - t0
    assert code == 0 and out == "started\n"
    assert elapsed < 15


@pytest.mark.slow
def test_timeout_kills_grandchild(root: Path, tmp_path: Path, cli_env: dict[str, str],
                                  dotagent_home: Path) -> None:
    flag = tmp_path / "F"
    simple_agent(root, "hang", "sh", ["-c", f"(sleep 5; touch {flag}) & sleep 60"], timeout=2)
    t0 = time.monotonic()
    code, _, err = run(cli_env, "hang")
    returned = time.monotonic()
    assert code == 124
    assert "[dotagent] agent 'hang', schedule 'main': timeout (exit 124)" in err
    assert returned - t0 < 15
    hb = json.loads((dotagent_home / "state/agents/hang/default.heartbeat.json").read_text())
    assert hb["exit_code"] == 124
    # The grandchild would have touched F 5 s after start; give it 6 s after the run returned.
    time.sleep(max(0.0, 6 - (time.monotonic() - returned)))
    assert not flag.exists()


@pytest.mark.slow
def test_term_trapping_agent_exiting_zero_at_deadline_is_timed_out(
        root: Path, cli_env: dict[str, str]) -> None:
    script = "import signal, sys, time\n" \
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n" \
             "time.sleep(60)\n"
    simple_agent(root, "trap", PY, ["-c", script], timeout=1)
    code, _, err = run(cli_env, "trap")
    assert code == 124 and "timeout" in err


@pytest.mark.slow
def test_term_ignoring_agent_is_killed_after_grace(root: Path, cli_env: dict[str, str]) -> None:
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    simple_agent(root, "stubborn", PY, ["-c", script], timeout=1)
    t0 = time.monotonic()
    code, _, _ = run(cli_env, "stubborn")
    assert code == 124
    assert 5 <= time.monotonic() - t0 < 15  # 1 s deadline + 5 s grace


def test_an_invalid_manifest_warning_escapes_its_directory_name(dotagent_home: Path) -> None:
    agents = dotagent_home / "agents"
    simple_agent(agents, "good", "true", [])
    bad = agents / "bad\x1b[31m\nname"
    bad.mkdir()
    (bad / "agent.toml").write_text("[agent\n")
    p = dotagent("run", "good")
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stderr
    shown = str(agents) + "/bad\\x1b[31m\\nname/agent.toml"
    assert p.stderr == (f"[dotagent] warning: manifest {shown} is invalid (recorded as "
                        "critical manifest_invalid; `dotagent doctor` shows why)\n")
