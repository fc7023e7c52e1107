"""Closed, full and abandoned standard streams (issue 7, items 2 and 3).

Every case runs the real `dotagent` executable with its stdout or stderr closed (the
descriptor really closed in the child), pointed at /dev/full, or a pipe whose reader is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers import DOTAGENT, simple_agent

# An agent that writes far more than a pipe buffer to both streams, then exits 3.
NOISY = ["-c", "i=0; while [ $i -lt 3000 ]; do echo line $i; echo err $i >&2; i=$((i+1)); "
               "done; exit 3"]


@contextmanager
def dead_reader() -> Iterator[int]:
    """The write end of a pipe whose read end is already closed (EPIPE on first write)."""
    r, w = os.pipe()
    os.close(r)
    try:
        yield w
    finally:
        os.close(w)


def closing(*fds: int) -> Callable[[], None]:
    def close() -> None:
        for fd in fds:
            os.close(fd)
    return close


def launch(args: list[str], env: dict[str, str], how: str) -> subprocess.CompletedProcess[str]:
    """Run dotagent with its standard streams set up as `how` says.

    closed-out / closed-err / closed-both: the descriptor is closed in the child;
    full-out / full-err: /dev/full; gone-out / gone-err: a pipe without a reader.
    Whatever stream is left alone is captured.
    """
    kwargs: dict[str, Any] = {"env": env, "text": True, "timeout": 120, "check": False}
    with open(os.devnull, "rb") as stdin, open("/dev/full", "w") as full, \
            dead_reader() as gone:
        kwargs["stdin"] = stdin
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        if how == "closed-out":
            kwargs["stdout"] = None
            kwargs["preexec_fn"] = closing(1)
        elif how == "closed-err":
            kwargs["stderr"] = None
            kwargs["preexec_fn"] = closing(2)
        elif how == "closed-both":
            kwargs["stdout"] = kwargs["stderr"] = None
            kwargs["preexec_fn"] = closing(1, 2)
        elif how == "full-out":
            kwargs["stdout"] = full
        elif how == "full-err":
            kwargs["stderr"] = full
        elif how == "gone-out":
            kwargs["stdout"] = gone
        elif how == "gone-err":
            kwargs["stderr"] = gone
        else:
            raise AssertionError(how)
        return subprocess.run([DOTAGENT, *args], **kwargs)


def no_python_noise(p: subprocess.CompletedProcess[str]) -> None:
    for text in (p.stdout or "", p.stderr or ""):
        assert "Traceback" not in text
        assert "Exception ignored" not in text


HOWS = ["closed-out", "closed-err", "closed-both", "full-out", "full-err", "gone-out",
        "gone-err"]


@pytest.mark.parametrize("how", HOWS)
def test_run_completes_whatever_happens_to_its_streams(how: str, tmp_path: Path,
                                                       cli_env: dict[str, str],
                                                       dotagent_home: Path) -> None:
    root = tmp_path / "agents"
    simple_agent(root, "noisy", "sh", NOISY)
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = launch(["run", "noisy"], cli_env, how)
    no_python_noise(p)
    assert p.returncode == 3, (p.stdout, p.stderr)  # the agent's own status, never 126
    beat = json.loads((dotagent_home / "state/agents/noisy/default.heartbeat.json").read_text())
    assert beat["finished_at"] is not None and beat["exit_code"] == 3
    log = (dotagent_home / "logs/agents/noisy/noisy.log").read_text()
    assert "line 2999\n" in log and "[stderr] err 2999\n" in log
    assert "run finished · exit=3" in log
    runs = [json.loads(line) for line in (dotagent_home / "audit.log").read_text().splitlines()
            if '"agent_run"' in line]
    assert [r["event"]["exit_code"] for r in runs] == [3]
    if how == "full-out":
        assert "could not show the agent's output (standard output: No space left on device)" \
            in p.stderr
    if how == "gone-out":
        assert "[dotagent]" not in p.stderr  # a reader going away is not worth a word


@pytest.mark.parametrize("how", ["closed-out", "full-out", "gone-out", "closed-both"])
def test_run_of_a_successful_agent_exits_0(how: str, tmp_path: Path,
                                           cli_env: dict[str, str]) -> None:
    root = tmp_path / "agents"
    simple_agent(root, "fine", "sh", ["-c", "echo hello; echo there >&2"])
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = launch(["run", "fine"], cli_env, how)
    no_python_noise(p)
    assert p.returncode == 0, p.stderr


def test_closed_stdout_cannot_capture_the_agents_pipes(tmp_path: Path,
                                                        cli_env: dict[str, str],
                                                        dotagent_home: Path) -> None:
    """With fd 1 closed at start, a descriptor opened later must not become "stdout": the
    agent's output goes to the log, and nothing of it leaks to dotagent's stderr."""
    root = tmp_path / "agents"
    simple_agent(root, "talk", "sh", ["-c", "echo to-stdout"])
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = launch(["run", "talk"], cli_env, "closed-out")
    assert p.returncode == 0 and p.stderr == ""
    assert "to-stdout\n" in (dotagent_home / "logs/agents/talk/talk.log").read_text()


READ_COMMANDS = [
    ["--version"],
    ["--help"],
    ["doctor"],
    ["doctor", "--json"],
    ["calendar", "--iterations", "3", "daily"],
    ["audit", "show"],
    ["audit", "verify"],
    ["status"],
    ["status", "--json"],
    ["next"],
]


def seed_audit_log(home: Path, entries: int = 1) -> None:
    from dotagent.audit import AuditLog
    from dotagent.audit.events import AgentRun
    from dotagent.paths import Home

    log = AuditLog(Home(home), fsync=False)
    for i in range(entries):
        log.append(AgentRun(agent="a", schedule="s", slug="default", exit_code=i % 3,
                            duration_seconds=1, timed_out=False))


@pytest.fixture
def seeded(dotagent_home: Path) -> None:
    seed_audit_log(dotagent_home)


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("how", ["closed-out", "gone-out", "closed-err", "gone-err"])
def test_no_command_minds_a_missing_reader(args: list[str], how: str,
                                           cli_env: dict[str, str]) -> None:
    """A closed stdout, or a reader that went away, changes nothing: no message, the
    command's own exit status (0 here)."""
    p = launch(args, cli_env, how)
    no_python_noise(p)
    assert p.returncode == 0, (p.stdout, p.stderr)
    if how.endswith("-out"):
        assert p.stderr == ""


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_a_full_stdout_is_one_clear_error(args: list[str], cli_env: dict[str, str]) -> None:
    p = launch(args, cli_env, "full-out")
    no_python_noise(p)
    assert p.returncode == 1
    assert p.stderr == "Error: cannot write to standard output: No space left on device\n"


def test_a_full_stderr_is_dropped_silently(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """dotagent's own messages to a dead stderr vanish; the status stays the command's."""
    p = launch(["run", "nobody"], cli_env, "full-err")
    assert p.returncode == 66 and p.stdout == ""
    p = launch(["calendar", "not an expression"], cli_env, "full-err")
    assert p.returncode == 1


def test_a_reader_that_stops_halfway(cli_env: dict[str, str], tmp_path: Path) -> None:
    """`dotagent calendar ... | head -1`: the reader takes one line and leaves while dotagent
    is still writing (far more than a pipe buffer)."""
    proc = subprocess.Popen([DOTAGENT, "calendar", "--iterations", "20000", "minutely"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert first.strip() == b"Original form: minutely"
    assert err == b""


def test_a_reader_that_stops_halfway_through_the_audit_log(cli_env: dict[str, str],
                                                           dotagent_home: Path) -> None:
    seed_audit_log(dotagent_home, 1500)
    proc = subprocess.Popen([DOTAGENT, "audit", "show"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env)
    assert proc.stdout is not None and proc.stderr is not None
    assert b"agent_run" in proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert err == b""


def test_shell_closed_stdout(cli_env: dict[str, str]) -> None:
    """The shell's own `>&-` (what a user types)."""
    p = subprocess.run(["sh", "-c", '"$0" --version >&-; echo "status $?" >&2', DOTAGENT],
                       capture_output=True, text=True, env=cli_env, check=False)
    assert p.stderr == "status 0\n"
