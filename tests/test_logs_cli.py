"""`dotagent logs`: tails of real runs' logs, interleaving, and `-f` across real rotations."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from datetime import UTC
from pathlib import Path

from dotagent.paths import Home
from dotagent.state.agentlog import AgentLogWriter, segments

from helpers import DOTAGENT, dotagent, sh_agent

agent = sh_agent


def run_now(cli_env: dict[str, str], name: str, *extra: str) -> None:
    p = dotagent("run-now", name, *extra, env=cli_env)
    assert p.returncode == 0, p.stdout + p.stderr


def log_of(cli_env: dict[str, str], name: str) -> Path:
    return Home(Path(cli_env["DOTAGENT_HOME"])).agent_log_file(name)


def test_tail_of_one_agent_and_of_all_interleaved(tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    agent(root, "alpha", 'echo "alpha says $(cat ' + str(tmp_path / "n") + ')"')
    agent(root, "beta", "echo beta says 1; echo beta again >&2")
    for step, name in enumerate(["alpha", "beta", "alpha"], start=1):
        (tmp_path / "n").write_text(str(step))
        run_now(cli_env, name)
        time.sleep(1.05)  # headers carry whole seconds: one run per second keeps them apart

    whole = log_of(cli_env, "alpha").read_text().splitlines()
    p = dotagent("logs", "alpha", "-n", "3", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == whole[-3:]
    assert dotagent("logs", "alpha", "-n", "1000", env=cli_env).stdout.splitlines() == whole

    every = dotagent("logs", "-n", "1000", env=cli_env).stdout.splitlines()
    said = [line for line in every if "says" in line]
    assert said == ["alpha | alpha says 1", "beta  | beta says 1", "alpha | alpha says 3"]
    assert len(every) == len(whole) + len(log_of(cli_env, "beta").read_text().splitlines())
    assert all(line.startswith(("alpha | ", "beta  | ")) for line in every)
    last = dotagent("logs", "-n", "2", env=cli_env).stdout.splitlines()
    assert last == [f"alpha | {line}" for line in whole[-2:]]


def test_schedule_filter_and_unknown_names(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    agent(root, "two", 'echo "from $0"', schedules="""
    [[schedules]]
    id = "one"
    type = "interval"
    interval_minutes = 60
    args = ["one"]
    [[schedules]]
    id = "other"
    type = "interval"
    interval_minutes = 60
    args = ["other"]
    """)
    run_now(cli_env, "two", "--schedule", "one")
    run_now(cli_env, "two", "--schedule", "other")
    run_now(cli_env, "two", "--schedule", "one")
    p = dotagent("logs", "two", "--schedule", "one", "-n", "100", env=cli_env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [x for x in lines if x.startswith("from")] == ["from one", "from one"]
    assert sum("schedule=one" in x for x in lines) == 2 and "schedule=other" not in p.stdout
    p = dotagent("logs", "two", "--schedule", "other", "-n", "1", env=cli_env)
    assert p.stdout.splitlines()[0].startswith("=== ") and "exit=0" in p.stdout

    p = dotagent("logs", "ghost", env=cli_env)
    assert p.returncode == 1 and "agent not found: 'ghost'" in p.stderr
    assert "known agents: 'two'" in p.stderr
    p = dotagent("logs", "two", "--schedule", "nope", env=cli_env)
    assert p.returncode == 1 and "schedule id not found: 'nope'" in p.stderr
    p = dotagent("logs", "../etc", env=cli_env)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    agent(root, "fresh", "true")
    p = dotagent("logs", "fresh", env=cli_env)
    assert p.returncode == 0 and p.stdout == "" and "has no log yet" in p.stderr


class Follower:
    """A real `dotagent logs -f` process whose lines are read with a deadline."""

    def __init__(self, cli_env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([DOTAGENT, "logs", "-f", *args], env=cli_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.lines: list[str] = []

    def read_until(self, done: object, deadline: float = 20.0) -> list[str]:
        end = time.monotonic() + deadline
        while not done(self.lines):  # type: ignore[operator]
            left = end - time.monotonic()
            assert left > 0, f"timed out; got {len(self.lines)} lines: {self.lines[-5:]}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                assert chunk, f"logs -f ended early: {self.proc.stderr.read()!r}"  # type: ignore[union-attr]
                self.buffer += chunk
                *complete, self.buffer = self.buffer.split(b"\n")
                self.lines += [c.decode() for c in complete]
        return self.lines

    def wait_holding(self, path: Path, deadline: float = 20.0) -> None:
        """Until the follower holds `path` open (it follows that log from then on)."""
        end = time.monotonic() + deadline
        fds = Path(f"/proc/{self.proc.pid}/fd")
        while True:
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                    return
            assert time.monotonic() < end, f"logs -f never opened {path}"
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()


def test_follow_across_real_rotations_loses_and_repeats_nothing(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    agent(root, "busy", "echo before")
    run_now(cli_env, "busy")
    active = log_of(cli_env, "busy")
    follower = Follower(cli_env, "busy", "-n", "1")
    [first] = follower.read_until(lambda lines: len(lines) >= 1)
    assert first == active.read_text().splitlines()[-1]  # the tail, then what comes

    # The agents' own writer, with a small rotation size: each ~4 KiB is a new file. Bursts
    # of 300 lines rotate several times between two polls of the follower.
    total = 0
    with AgentLogWriter(active, max_bytes=4096, keep=50) as writer:
        for burst in (40, 300, 10, 300, 5, 250, 95):
            for _ in range(burst):
                total += 1
                writer.write(f"line {total:05d} {'.' * 30}\n".encode())
                if total % 10 == 0:
                    writer.flush()
            writer.flush()
            time.sleep(0.15)
        rotations = writer.rotations
    assert rotations >= 10
    assert len(segments(active)) >= 10
    lines = follower.read_until(lambda lines: any(f"line {total:05d}" in x for x in lines))
    got = [x for x in lines[1:] if x.startswith("line ")]
    assert got == [f"line {i:05d} {'.' * 30}" for i in range(1, total + 1)]
    notes = [x for x in lines[1:] if not x.startswith("line ")]
    # The writer starts each new file of a run under way with a note (docs/logs.md).
    assert len(notes) == rotations
    assert all(x.startswith("[dotagent] log rotated; this run's earlier output is in busy.log.")
               for x in notes)
    code, err = follower.stop()
    assert code == 0 and err == ""


def test_follow_all_agents_with_prefix_and_end_cleanly(tmp_path: Path,
                                                       cli_env: dict[str, str]) -> None:
    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    agent(root, "first", "echo one from first")
    run_now(cli_env, "first")
    follower = Follower(cli_env, "-n", "0")
    follower.wait_holding(log_of(cli_env, "first"))
    agent(root, "second", "echo one from second")
    run_now(cli_env, "second")  # a new agent's log, found while following
    run_now(cli_env, "first")
    lines = follower.read_until(
        lambda ls: any(x.startswith("first") and x.endswith(" | one from first") for x in ls)
        and "second | one from second" in ls)
    assert all(x.startswith(("first  | ", "second | ", "first | ")) for x in lines), lines
    code, err = follower.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in err and err == ""

    # SIGTERM ends it with 0 as well.
    follower = Follower(cli_env, "first", "-n", "1")
    follower.read_until(lambda ls: len(ls) >= 1)
    assert follower.stop(signal.SIGTERM) == (0, "")

    # A reader that goes away (`logs -f | head -1`): it ends by itself, 0, no traceback.
    follower = Follower(cli_env, "first", "-n", "1")
    follower.read_until(lambda ls: len(ls) >= 1)
    assert follower.proc.stdout is not None
    follower.proc.stdout.close()
    code = follower.proc.wait(timeout=10)
    assert follower.proc.stderr is not None
    err = follower.proc.stderr.read().decode()
    assert code == 0 and "Traceback" not in err and "Error" not in err


def test_tail_reaches_back_into_rotated_and_compressed_parts(tmp_path: Path,
                                                             cli_env: dict[str, str]) -> None:
    from datetime import datetime, timedelta

    from dotagent.config import LoggingSection
    from dotagent.state.logretention import sweep_logs

    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    agent(root, "old", "echo ran")
    run_now(cli_env, "old")
    active = log_of(cli_env, "old")
    with AgentLogWriter(active, max_bytes=2048, keep=20) as writer:
        for i in range(1, 301):
            writer.write(f"entry {i:03d} {'-' * 20}\n".encode())
            writer.flush()
    parts = segments(active)
    assert len(parts) >= 3
    # The retention sweep compresses the parts once they are more than a day old.
    for seg in parts:
        os.utime(seg.path, (time.time() - 3 * 86400,) * 2)
    home = Home(Path(cli_env["DOTAGENT_HOME"]))
    report = sweep_logs(home, datetime.now(UTC) + timedelta(hours=1), LoggingSection())
    assert report.compressed == len(parts) and all(s.compressed for s in segments(active))

    p = dotagent("logs", "old", "-n", "1000", env=cli_env)
    assert p.returncode == 0, p.stderr
    entries = [x for x in p.stdout.splitlines() if x.startswith("entry ")]
    assert entries == [f"entry {i:03d} {'-' * 20}" for i in range(1, 301)]
    assert p.stdout.splitlines()[2] == "ran"  # the run's block, from the oldest part
    last = dotagent("logs", "old", "-n", "5", env=cli_env).stdout.splitlines()
    assert last == [f"entry {i:03d} {'-' * 20}" for i in range(296, 301)]


def test_follow_a_real_run_that_rotates_its_log(tmp_path: Path, dotagent_home: Path,
                                                cli_env: dict[str, str]) -> None:
    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    (dotagent_home / "config.toml").write_text("[logging]\nagent_log_max_mb = 1\n")
    # About 2.6 MiB in one run: its own writer rotates the log twice while it runs.
    agent(root, "flood", "echo begin; seq 1 400000; echo end")
    # Whether the follower is still waiting for the log when the run starts (then it reads
    # from the log's first byte) or comes later (then its tail of up to 10^6 lines covers
    # what was written), every line arrives exactly once.
    follower = Follower(cli_env, "flood", "-n", "1000000")
    run_now(cli_env, "flood")
    lines = follower.read_until(lambda ls: any(x.startswith("=== ") and "exit=0" in x
                                               for x in ls[-3:]), deadline=60)
    numbers = [x for x in lines if x.isdigit()]
    assert numbers == [str(i) for i in range(1, 400001)]
    notes = [x for x in lines if x.startswith("[dotagent] log rotated")]
    assert len(notes) == len(segments(log_of(cli_env, "flood"))) >= 2
    assert lines[lines.index("begin") + 1] == "1" and lines[-2] == "end"
    assert follower.stop() == (0, "")
