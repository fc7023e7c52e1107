"""`dotagent run` under pressure: signals, a reader that goes away, huge output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import DOTAGENT, simple_agent


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition (not a sleep-and-hope: it returns as soon as it holds)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def audit(home: Path) -> list[dict]:
    return [json.loads(x)["event"] for x in (home / "audit.log").read_text().splitlines()]


@pytest.fixture
def root(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    r = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(r)
    return r


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_stops_the_agent_and_the_run_is_recorded(root: Path, tmp_path: Path,
                                                        cli_env: dict[str, str],
                                                        dotagent_home: Path,
                                                        sig: signal.Signals) -> None:
    pidfile = tmp_path / "agent.pid"
    simple_agent(root, "long", "sh", ["-c", f'echo $$ > {pidfile}; sleep 30; touch DONE'])
    proc = subprocess.Popen([DOTAGENT, "run", "long"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: proc.poll() is not None or (pidfile.exists() and
                                                  bool(pidfile.read_text().strip())))
    assert proc.poll() is None, proc.communicate()
    agent_pid = int(pidfile.read_text())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig
    assert f"interrupted by {sig.name}" in err
    assert not pid_alive(agent_pid)
    hb = json.loads((dotagent_home / "state/agents/long/default.heartbeat.json").read_text())
    assert hb["finished_at"] is not None and hb["exit_code"] == 128 + signal.SIGTERM
    events = audit(dotagent_home)
    kinds = [e["event_type"] for e in events]
    assert kinds[-2:] == ["run_interrupted", "agent_run"]
    assert events[-1]["exit_code"] == 128 + signal.SIGTERM
    log = (dotagent_home / "logs/agents/long/long.log").read_text()
    assert f"run interrupted by {sig.name}" in log


def holds_open(pid: int, name: str) -> bool:
    """The process has a descriptor open on a file called `name`."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + name):
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_before_the_agent_starts_aborts_at_once_and_records_no_run(
        root: Path, tmp_path: Path, cli_env: dict[str, str], dotagent_home: Path,
        sig: signal.Signals) -> None:
    import fcntl

    marker = tmp_path / "ran"
    simple_agent(root, "never", "touch", [str(marker)])
    state = dotagent_home / "state"
    state.mkdir(mode=0o700)
    # Another process holds the manifest registry's lock: `run` waits for it before running.
    with open(state / "known_manifests.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([DOTAGENT, "run", "never"], env=cli_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: proc.poll() is not None or holds_open(proc.pid,
                                                               "known_manifests.lock"))
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        # It exits while the lock is still held: the wait is abandoned, not finished.
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + sig
    assert err == (f"[dotagent] agent 'never': {sig.name} received before the agent started; "
                   "nothing was run\n")
    assert not marker.exists()
    assert not (state / "agents").exists()  # no heartbeat
    log = dotagent_home / "audit.log"
    assert not log.exists() or '"agent_run"' not in log.read_text()
    assert not log.exists() or '"run_interrupted"' not in log.read_text()


def test_reader_going_away_does_not_kill_the_agent(root: Path, cli_env: dict[str, str],
                                                   dotagent_home: Path) -> None:
    script = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.01)\n"
    simple_agent(root, "chatty", sys.executable, ["-c", script])
    proc = subprocess.Popen([DOTAGENT, "run", "chatty"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"0\n"
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    log = (dotagent_home / "logs/agents/chatty/chatty.log").read_text()
    assert "\n39\n" in log  # the agent ran to the end and everything was logged
    assert audit(dotagent_home)[-1]["exit_code"] == 0


def test_huge_output_without_newlines_is_linear(root: Path, cli_env: dict[str, str],
                                                dotagent_home: Path) -> None:
    simple_agent(root, "flood", "sh", ["-c", "head -c 20000000 /dev/zero | tr '\\0' a"])
    t0 = time.monotonic()
    p = subprocess.run([DOTAGENT, "run", "flood"], env=cli_env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 20  # quadratic handling took minutes for this size
    logs = (dotagent_home / "logs/agents/flood").iterdir()  # the log rotates at 10 MiB
    assert sum(p.stat().st_size for p in logs) > 20_000_000


def test_invalid_utf8_is_logged_as_valid_text(root: Path, cli_env: dict[str, str],
                                              dotagent_home: Path) -> None:
    simple_agent(root, "binary", "printf", ["ok \\377\\376 end\\n"])
    assert subprocess.run([DOTAGENT, "run", "binary"], env=cli_env, capture_output=True,
                          check=False).returncode == 0
    raw = (dotagent_home / "logs/agents/binary/binary.log").read_bytes()
    raw.decode("utf-8")  # must not raise
    assert "ok \ufffd\ufffd end" in raw.decode()


def test_missing_shebang_interpreter_is_named(root: Path, cli_env: dict[str, str]) -> None:
    d = simple_agent(root, "shebang", "./script", [])
    (d / "script").write_text("#!/nonexistent/interp -x\necho hi\n")
    (d / "script").chmod(0o755)
    p = subprocess.run([DOTAGENT, "run", "shebang"], env=cli_env, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 127
    assert "its interpreter /nonexistent/interp (from #!) was not found" in p.stderr
    assert os.path.exists(d / "script")
