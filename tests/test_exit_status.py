"""dotagent's own refusals never look like an agent's exit status (S15.10, issue 7 item 10).

`run` passes the agent's status through, so its refusals use sysexits codes (64-78) and usage
mistakes 2; every other command keeps 0 / 1 / 2. All through the real executable.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from helpers import DOTAGENT, dotagent, simple_agent


@pytest.fixture
def root(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    r = tmp_path / "agents"
    r.mkdir()
    cli_env["DOTAGENT_ROOT"] = str(r)
    return r


def agent_runs(home: Path) -> list[dict[str, object]]:
    log = home / "audit.log"
    if not log.exists():
        return []
    return [json.loads(line)["event"] for line in log.read_text().splitlines()
            if '"agent_run"' in line]


def inject(tmp_path: Path, env: dict[str, str], module: str, attr: str, exc: str) -> None:
    """Make `module.attr` raise `exc` inside the real executable (a test-only sitecustomize)."""
    site = tmp_path / "inject"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import importlib
        def _boom(*args, **kwargs):
            raise {exc}
        setattr(importlib.import_module({module!r}), {attr!r}, _boom)
        """))
    env["PYTHONPATH"] = str(site)


def test_unknown_agent_is_ex_noinput(root: Path, cli_env: dict[str, str]) -> None:
    simple_agent(root, "alpha", "true", [])
    p = dotagent("run", "beta", env=cli_env)
    assert (p.returncode, p.stderr) == (66, "Error: agent not found: 'beta' (known agents: "
                                            "'alpha')\n")


def test_unknown_schedule_is_ex_noinput(root: Path, cli_env: dict[str, str]) -> None:
    simple_agent(root, "alpha", "true", [])
    p = dotagent("run", "alpha", "--schedule", "nope", env=cli_env)
    assert p.returncode == 66
    assert p.stderr == "Error: schedule id not found: 'nope' (agent 'alpha' has: 'main')\n"


def test_several_schedules_is_a_usage_error(root: Path, cli_env: dict[str, str]) -> None:
    d = simple_agent(root, "two", "true", [])
    with (d / "agent.toml").open("a") as fh:
        fh.write('\n[[schedules]]\nid = "other"\ntype = "interval"\ninterval_minutes = 5\n'
                 'args = ["x"]\n')
    p = dotagent("run", "two", env=cli_env)
    assert p.returncode == 2
    assert p.stderr == ("Error: agent 'two' has several schedules; choose one with "
                        "--schedule ('main', 'other')\n")


def test_state_outside_home_is_ex_noperm(root: Path, tmp_path: Path, cli_env: dict[str, str],
                                         dotagent_home: Path) -> None:
    simple_agent(root, "escape", "true", [])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dotagent_home / "state/agents").mkdir(parents=True)
    (dotagent_home / "state/agents/escape").symlink_to(elsewhere)
    p = dotagent("run", "escape", env=cli_env)
    assert p.returncode == 77, p.stderr
    assert "resolves outside" in p.stderr and "Traceback" not in p.stderr
    assert list(elsewhere.iterdir()) == []


def test_heartbeat_that_is_a_directory_is_ex_cantcreat(root: Path, cli_env: dict[str, str],
                                                       dotagent_home: Path) -> None:
    simple_agent(root, "hb", "sh", ["-c", "echo ran > ran.txt"])
    beat = dotagent_home / "state/agents/hb/default.heartbeat.json"
    beat.mkdir(parents=True)
    p = dotagent("run", "hb", env=cli_env)
    assert p.returncode == 73
    assert p.stderr.endswith(f"Error: cannot write {beat}: Is a directory\n")
    assert not (root / "hb/ran.txt").exists()  # refused before the agent started
    assert agent_runs(dotagent_home) == []


def test_log_that_is_a_directory_is_ex_cantcreat(root: Path, cli_env: dict[str, str],
                                                 dotagent_home: Path) -> None:
    simple_agent(root, "lg", "true", [])
    log = dotagent_home / "logs/agents/lg/lg.log"
    log.mkdir(parents=True)
    p = dotagent("run", "lg", env=cli_env)
    assert p.returncode == 73
    assert p.stderr.endswith(f"Error: cannot append to the log {log}: Is a directory\n")
    # Refused before the heartbeat: nothing is left "started".
    assert not (dotagent_home / "state/agents/lg/default.heartbeat.json").exists()


def test_state_directory_that_is_a_file(tmp_path: Path, root: Path,
                                        cli_env: dict[str, str]) -> None:
    simple_agent(root, "any", "true", [])
    blocker = tmp_path / "home-file"
    blocker.write_text("")
    cli_env["DOTAGENT_HOME"] = str(blocker)
    p = dotagent("run", "any", env=cli_env)
    assert p.returncode == 73
    assert p.stderr.endswith(f"Error: cannot create directory {blocker}/state (to lock "
                             f"{blocker}/state/known_manifests.lock): {blocker} is not a "
                             "directory\n")


def test_a_log_that_fails_mid_run_keeps_the_agents_status(root: Path, cli_env: dict[str, str],
                                                          dotagent_home: Path) -> None:
    """The per-agent log stops accepting writes halfway through the run (a file-size limit,
    EFBIG, standing in for a full disk): the run is finished and recorded all the same."""
    simple_agent(root, "big", "sh", ["-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; "
                                           "i=$((i+1)); done; exit 4"])
    log = dotagent_home / "logs/agents/big/big.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"x" * 60_000)
    limit = 64 * 1024

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run([DOTAGENT, "run", "big"], env=cli_env, capture_output=True, text=True,
                       preexec_fn=limited, timeout=60, check=False)
    assert p.returncode == 4, p.stderr
    assert (f"[dotagent] error: agent 'big', schedule 'main': cannot write to the log {log}: "
            "File too large (the rest of this run's output is not logged)") in p.stderr
    assert "line 1999" in p.stdout  # the echo went on
    assert [r["exit_code"] for r in agent_runs(dotagent_home)] == [4]
    beat = json.loads((dotagent_home / "state/agents/big/default.heartbeat.json").read_text())
    assert beat["exit_code"] == 4 and beat["finished_at"] is not None


def test_a_heartbeat_that_cannot_be_finished_keeps_the_agents_status(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    # The agent replaces its own heartbeat file by a directory: the finish write fails.
    simple_agent(root, "sabotage", "sh",
                 ["-c", 'rm -f "$AGENT_HEARTBEAT_FILE" && mkdir "$AGENT_HEARTBEAT_FILE"'])
    p = dotagent("run", "sabotage", env=cli_env)
    beat = dotagent_home / "state/agents/sabotage/default.heartbeat.json"
    assert p.returncode == 0, p.stderr
    assert (f"[dotagent] error: agent 'sabotage', schedule 'main': cannot write {beat}: "
            "Is a directory") in p.stderr
    assert [r["exit_code"] for r in agent_runs(dotagent_home)] == [0]


def test_internal_error_in_run_is_ex_software(root: Path, tmp_path: Path,
                                              cli_env: dict[str, str]) -> None:
    simple_agent(root, "alpha", "true", [])
    inject(tmp_path, cli_env, "dotagent.runner.foreground", "run_schedule",
           "RuntimeError('injected')")
    p = dotagent("run", "alpha", env=cli_env)
    assert p.returncode == 70
    assert p.stderr.endswith("Error: internal error: RuntimeError: injected (run with --debug "
                             "for details)\n")


def test_os_error_in_run_is_ex_ioerr(root: Path, tmp_path: Path,
                                     cli_env: dict[str, str]) -> None:
    simple_agent(root, "alpha", "true", [])
    inject(tmp_path, cli_env, "dotagent.runner.foreground", "run_schedule",
           "OSError(5, 'Input/output error', '/somewhere/file')")
    p = dotagent("run", "alpha", env=cli_env)
    assert p.returncode == 74
    assert p.stderr == "Error: cannot use /somewhere/file: Input/output error\n"


def test_other_commands_keep_the_plain_convention(tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    inject(tmp_path, cli_env, "dotagent.doctor", "run_doctor", "RuntimeError('injected')")
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1 and "internal error: RuntimeError: injected" in p.stderr
    blocker = tmp_path / "home-file"
    blocker.write_text("")
    cli_env.pop("PYTHONPATH")
    cli_env["DOTAGENT_HOME"] = str(blocker)
    p = dotagent("selfcheck", env=cli_env)
    assert p.returncode == 1 and p.stderr.startswith("Error: cannot ")
    assert "Traceback" not in p.stderr
    p = dotagent("calendar", "--iterations", "x", "daily", env=cli_env)
    assert p.returncode == 2


def test_agent_statuses_still_pass_through(root: Path, cli_env: dict[str, str]) -> None:
    for code in (0, 1, 2, 66, 73):
        simple_agent(root, f"exit{code}", "sh", ["-c", f"exit {code}"])
        assert dotagent("run", f"exit{code}", env=cli_env).returncode == code
