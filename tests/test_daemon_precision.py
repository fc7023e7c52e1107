"""Dispatch precision and the loop's planned wakes (issue 8's numbers; bench/bench_daemon.py
measures them, these tests pin the mechanisms down).

- A run due within PREPARE_AHEAD is handed to a worker at once and its agent spawned at the
  instant: the bookkeeping before a spawn (lock, heartbeat, history, log) no longer makes
  every run that late. The agent never starts before its instant, and the recorded start is
  the instant.
- Settling a window (missed, given up) does not make the loop wake again at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dotagent.audit import AuditLog
from dotagent.clock import from_epoch
from dotagent.config import load_config
from dotagent.daemon import loop as daemon_loop
from dotagent.daemon.loop import PREPARE_AHEAD, Daemon
from dotagent.discovery import discover
from dotagent.errors import UnsafeNameError
from dotagent.machineid import jitter_salt
from dotagent.paths import Home
from dotagent.runner.lifecycle import RunDeps, RunRequest, execute
from dotagent.runner.process import StopRequest
from dotagent.schedule.windows import WindowState
from dotagent.state.heartbeat import HeartbeatStore
from dotagent.state.history import History
from dotagent.state.windows import WindowStore

from helpers import write_agent

CLOCK_AGENT = """
[agent]
name = "{name}"
timeout_seconds = 10
[run]
command = "/bin/date"
args = ["+%s.%N"]
[[schedules]]
id = "s"
type = "expression"
expression = "{expression}"
"""


def _agent(home: Path, name: str, expression: str) -> None:
    write_agent(home / "agents", name, CLOCK_AGENT.format(name=name, expression=expression))


def _daemon(home: Path) -> Daemon:
    h = Home(home)
    return Daemon(h, load_config(h).require(), env=dict(os.environ), zone=UTC,
                  log=lambda text: None)


def _printed_start(home: Path, agent: str) -> float:
    """The time the agent printed as its first act (its output in the per-agent log)."""
    log = (home / "logs" / "agents" / agent / f"{agent}.log").read_text()
    return float(next(line for line in log.splitlines() if line[:1].isdigit()))


def _history(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "state" / "history.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]


class _Timer:
    def poke(self) -> None:
        pass


def _next_quarter(after: float) -> float:
    return (int(after * 4) + 1) / 4


def test_a_run_due_within_the_lead_is_prepared_now_and_spawned_at_its_instant(
        dotagent_home: Path) -> None:
    _agent(dotagent_home, "soon", "*:*:0/0.25")
    daemon = _daemon(dotagent_home)
    daemon.timer = _Timer()  # type: ignore[assignment]
    # The instant: a quarter second far enough ahead that the spawn must wait for it.
    instant = _next_quarter(time.time() + 0.3)
    now = from_epoch(instant) - PREPARE_AHEAD / 2
    daemon.rescan(now)
    # Settle the windows before `now`: only the one at `instant` is ahead.
    daemon.windows.save("soon", "default", "s",
                        WindowState(expected_at=from_epoch(instant - 0.25), missed=True))
    daemon.rescan(now)

    async def go() -> datetime | None:
        wake = daemon.step(now)
        assert "soon" in daemon.running, "a run due within PREPARE_AHEAD is dispatched now"
        future = daemon.running["soon"].future
        assert future is not None
        await asyncio.wrap_future(future)
        return wake

    asyncio.run(go())
    daemon.executor.shutdown(wait=True)
    started = _printed_start(dotagent_home, "soon")
    assert started >= instant, "the agent never starts before its instant"
    assert started - instant < 1.0
    (row,) = _history(dotagent_home)
    assert row["window_at"] == instant
    assert row["started_at"] >= instant, "the recorded start is the instant, not the handover"
    beat = HeartbeatStore(Home(dotagent_home)).read("soon", "default")
    assert beat is not None and beat.started_at == int(instant)


def test_a_run_due_later_is_not_dispatched_and_the_loop_wakes_ahead_of_it(
        dotagent_home: Path) -> None:
    _agent(dotagent_home, "later", "*:*:0/10")
    daemon = _daemon(dotagent_home)
    t0 = datetime(2026, 6, 15, 12, 0, 1, tzinfo=UTC)
    daemon.rescan(t0)
    daemon.windows.save("later", "default", "s",
                        WindowState(expected_at=datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC),
                                    missed=True))
    daemon.rescan(t0)
    wake = daemon.step(t0)
    assert daemon.running == {}
    assert wake == datetime(2026, 6, 15, 12, 0, 10, tzinfo=UTC) - PREPARE_AHEAD


def test_settling_a_missed_window_plans_no_immediate_wake(dotagent_home: Path) -> None:
    # A daily schedule seen for the first time: yesterday's window is stale, so the first
    # step records it as missed. The next wake is the next window (minus the lead) or the
    # rescan backstop, never `now` again (the loop used to plan from the entry it had
    # before settling, and woke once more for nothing).
    _agent(dotagent_home, "daily", "*-*-* 14:00:00 UTC")
    daemon = _daemon(dotagent_home)
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    wake = daemon.step(now)
    audit = (dotagent_home / "audit.log").read_text().splitlines()
    assert sum('"event_type":"window_missed"' in line for line in audit) == 1
    assert wake is not None and wake > now
    assert wake == now + timedelta(minutes=daemon.config.daemon.rescan_minutes)


def test_not_before_holds_the_spawn_until_the_instant(dotagent_home: Path) -> None:
    _agent(dotagent_home, "held", "*:*:0/0.25")
    h = Home(dotagent_home)
    loaded = discover(dict(os.environ), include_cwd=False).agents["held"]
    sched = loaded.manifest.schedules[0]
    at = time.time() + 0.4
    deps = RunDeps(home=h, audit=AuditLog(h), history=History(h), windows=WindowStore(h))
    report = execute(RunRequest(loaded=loaded, schedule=sched, source="daemon",
                                window=WindowState(expected_at=from_epoch(at)),
                                policy=loaded.manifest.policy(sched, salt=jitter_salt(h)),
                                stdin_devnull=True,
                                not_before=at), deps)
    assert report.ok
    assert _printed_start(dotagent_home, "held") >= at
    assert report.outcome is not None and report.outcome.started_at == int(at)


def test_not_before_far_ahead_waits_at_most_max_early(dotagent_home: Path) -> None:
    # A clock set back after the handover must not hold the run (and its agent lock) for
    # as long as the jump: the wait is bounded.
    from dotagent.runner.foreground import MAX_EARLY

    _agent(dotagent_home, "jumped", "*:*:0/0.25")
    h = Home(dotagent_home)
    loaded = discover(dict(os.environ), include_cwd=False).agents["jumped"]
    sched = loaded.manifest.schedules[0]
    t0 = time.monotonic()
    report = execute(RunRequest(loaded=loaded, schedule=sched, source="daemon",
                                not_before=time.time() + 3600), RunDeps(home=h,
                                                                        audit=AuditLog(h)))
    assert report.ok
    assert time.monotonic() - t0 < MAX_EARLY + 5


def test_a_stop_during_the_wait_ends_it_and_the_run_is_recorded_interrupted(
        dotagent_home: Path) -> None:
    _agent(dotagent_home, "stopped", "*:*:0/0.25")
    h = Home(dotagent_home)
    loaded = discover(dict(os.environ), include_cwd=False).agents["stopped"]
    sched = loaded.manifest.schedules[0]
    stop = StopRequest()
    stop.request(signal.SIGTERM)
    t0 = time.monotonic()
    report = execute(RunRequest(loaded=loaded, schedule=sched, source="daemon", stop=stop,
                                not_before=time.time() + 30), RunDeps(home=h,
                                                                      audit=AuditLog(h)))
    assert time.monotonic() - t0 < 10
    assert report.outcome is not None and report.outcome.interrupted_by == signal.SIGTERM
    stop.close()


def test_home_join_still_refuses_a_symlink_out_after_the_root_is_remembered(
        dotagent_home: Path, tmp_path: Path) -> None:
    h = Home(dotagent_home)
    (dotagent_home / "state").mkdir(exist_ok=True)
    h.join("state", "agents", "x.json")  # the resolved root is remembered from here on
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (dotagent_home / "state" / "agents").symlink_to(outside)
    with pytest.raises(UnsafeNameError):
        h.join("state", "agents", "x.json")


def test_prepare_ahead_is_short() -> None:
    # The lead holds the agent lock that much earlier; it must stay far below any window.
    assert timedelta(0) < PREPARE_AHEAD <= timedelta(milliseconds=200)
    assert daemon_loop.PREPARE_AHEAD is PREPARE_AHEAD


def test_a_finished_run_leaves_no_descriptor_behind(dotagent_home: Path) -> None:
    # Each dispatch opened a StopRequest pipe that nothing closed: two descriptors per run,
    # so a daemon firing every few seconds ran out of them within hours.
    write_agent(dotagent_home / "agents", "quick", """
        [agent]
        name = "quick"
        [run]
        command = "/bin/true"
        [[schedules]]
        id = "s"
        type = "interval"
        interval_minutes = 60
        """)
    daemon = _daemon(dotagent_home)
    daemon.timer = _Timer()  # type: ignore[assignment]
    now = datetime.now(UTC)
    daemon.rescan(now)
    entry = daemon.entries[0]

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def one_run(i: int) -> None:
        daemon.dispatch(entry, now + timedelta(minutes=i), 1, now)
        future = daemon.running["quick"].future
        assert future is not None
        await asyncio.wrap_future(future)
        for _ in range(100):  # _finished is scheduled from the worker thread
            if "quick" not in daemon.running:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the run was never finished")

    async def go() -> tuple[int, int]:
        await one_run(0)  # the first run opens what stays open (history, thread pool)
        before = open_fds()
        for i in range(1, 11):
            await one_run(i)
        return before, open_fds()

    before, after = asyncio.run(go())
    daemon.executor.shutdown(wait=True)
    assert after <= before, f"{after - before} descriptors left open by 10 runs"


def _settle(daemon: Daemon, agent: str, at: datetime) -> None:
    """Record the window at `at` as handled, so that what follows it is judged from there."""
    daemon.windows.save(agent, "default", "s", WindowState(expected_at=at, missed=True))


def _run_step(daemon: Daemon, now: datetime) -> list[str]:
    """One step inside an event loop; returns the agents it dispatched (after they ran)."""
    daemon.timer = _Timer()  # type: ignore[assignment]

    async def go() -> list[str]:
        daemon.step(now)
        started = list(daemon.running)
        for run in list(daemon.running.values()):
            assert run.future is not None
            await asyncio.wrap_future(run.future)
        return started

    try:
        return asyncio.run(go())
    finally:
        daemon.executor.shutdown(wait=True)


def _audit(home: Path, event_type: str) -> list[dict[str, Any]]:
    import json

    lines = (home / "audit.log").read_text().splitlines()
    return [e["event"] for e in map(json.loads, lines) if e["event"]["event_type"] == event_type]


def test_a_catch_up_run_records_the_windows_it_passes_over(dotagent_home: Path) -> None:
    # The daemon was frozen (or at its cap) for three windows: the latest runs, the two
    # before it are recorded, never silently dropped (SPEC S14.1: "recorded as skipped").
    _agent(dotagent_home, "behind", "*:*:0/10")
    daemon = _daemon(dotagent_home)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    t0 -= timedelta(seconds=t0.second % 10)
    daemon.rescan(t0)
    _settle(daemon, "behind", t0)
    daemon.rescan(t0)
    assert _run_step(daemon, t0 + timedelta(seconds=35)) == ["behind"]
    (missed,) = _audit(dotagent_home, "window_missed")
    assert missed["reason"].startswith("2 window(s) passed")
    assert missed["expected_at_iso"].startswith((t0 + timedelta(seconds=10)).strftime(
        "%Y-%m-%dT%H:%M:%S"))
    (row,) = _history(dotagent_home)
    assert row["window_at"] == (t0 + timedelta(seconds=30)).timestamp()


def test_windows_passed_before_a_new_agents_first_run_are_recorded(
        dotagent_home: Path) -> None:
    # The soak's start: 200 new agents at once, the cap lets 10 run; an agent whose turn
    # came three windows later ran only the latest. The two it passed over had come due
    # while the daemon watched it: recorded as skipped, as after any run (S14.1).
    _agent(dotagent_home, "newcomer", "*:*:0/10")
    daemon = _daemon(dotagent_home)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    t0 -= timedelta(seconds=t0.second % 10)
    daemon.rescan(t0 + timedelta(seconds=3))  # first seen: the window at t0 is due
    assert _run_step(daemon, t0 + timedelta(seconds=25)) == ["newcomer"]
    (missed,) = _audit(dotagent_home, "window_missed")
    assert missed["reason"].startswith("2 window(s) passed")
    assert missed["expected_at_iso"].startswith(t0.strftime("%Y-%m-%dT%H:%M:%S"))
    (row,) = _history(dotagent_home)
    assert row["window_at"] == (t0 + timedelta(seconds=20)).timestamp()


def test_a_new_agent_first_seen_between_windows_counts_from_then(
        dotagent_home: Path) -> None:
    # Nothing before the daemon first saw it is counted: its first window ran on time.
    _agent(dotagent_home, "punctual", "*:*:0/10")
    daemon = _daemon(dotagent_home)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    t0 -= timedelta(seconds=t0.second % 10)
    daemon.rescan(t0 + timedelta(seconds=3))
    assert _run_step(daemon, t0 + timedelta(seconds=3)) == ["punctual"]
    assert _audit(dotagent_home, "window_missed") == []


def test_under_the_cap_the_longest_waiting_window_goes_first(dotagent_home: Path) -> None:
    (dotagent_home / "config.toml").write_text("[daemon]\nmax_concurrent_runs = 1\n")
    _agent(dotagent_home, "aaa-recent", "*:*:0/10")
    _agent(dotagent_home, "zzz-waiting", "*:*:5/10")
    daemon = _daemon(dotagent_home)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    now -= timedelta(seconds=now.second % 10)
    now += timedelta(seconds=1)  # aaa's window is 1 s old, zzz's 6 s
    daemon.rescan(now)
    _settle(daemon, "aaa-recent", now - timedelta(seconds=11))
    _settle(daemon, "zzz-waiting", now - timedelta(seconds=16))
    daemon.rescan(now)
    assert [e.agent for e in daemon.entries] == ["aaa-recent", "zzz-waiting"]
    assert _run_step(daemon, now) == ["zzz-waiting"]


def test_a_wake_does_not_judge_again_what_is_known_to_be_idle(
        dotagent_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dotagent.daemon import tick

    for i in range(5):
        _agent(dotagent_home, f"idle-{i}", "*-*-* 14:00:00 UTC")
    daemon = _daemon(dotagent_home)
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    daemon.step(now)  # judges all five (and records yesterday's windows as missed)
    judged: list[str] = []
    real_decide = tick.Entry.decide

    def counting(self: tick.Entry, at: datetime) -> Any:
        judged.append(self.agent)
        return real_decide(self, at)

    monkeypatch.setattr(tick.Entry, "decide", counting)
    wake = daemon.step(now + timedelta(minutes=1))
    assert judged == [], "nothing changed and nothing is due: no schedule is judged again"
    assert wake == now + timedelta(minutes=daemon.config.daemon.rescan_minutes)
    # A schedule whose state changed (a run ended, a window was settled) is judged again.
    daemon.entries[2] = tick.refresh(daemon.entries[2], daemon.home, daemon.windows)
    daemon.step(now + timedelta(minutes=2))
    assert judged == ["idle-2"]
    # So is every one when the clock went back past the moment they were judged.
    judged.clear()
    daemon.step(now - timedelta(minutes=10))
    assert sorted(judged) == [f"idle-{i}" for i in range(5)]


def test_a_finished_run_does_not_scan_the_windows_directory(
        dotagent_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # state/windows holds every agent's window files (one or two a minute for a schedule
    # firing every few seconds, kept for 30 days): listing it after every run made each
    # run cost more the longer the daemon had been running.
    _agent(dotagent_home, "scan", "*:*:0/10")
    daemon = _daemon(dotagent_home)
    daemon.timer = _Timer()  # type: ignore[assignment]
    now = datetime.now(UTC)
    daemon.rescan(now)
    scans: list[int] = []
    real_scan = WindowStore._scan

    def counting(self: WindowStore, tmp: bool = False) -> Any:
        scans.append(1)
        return real_scan(self, tmp)

    monkeypatch.setattr(WindowStore, "_scan", counting)

    async def go() -> None:
        for i in range(3):
            window = now.replace(microsecond=0) + timedelta(seconds=10 * i)
            daemon.dispatch(daemon.entries[0], window, 1, now)
            future = daemon.running["scan"].future
            assert future is not None
            await asyncio.wrap_future(future)
            while "scan" in daemon.running:
                await asyncio.sleep(0.01)

    asyncio.run(go())
    daemon.executor.shutdown(wait=True)
    assert scans == []
    state = daemon.entries[0].state
    assert state.window is not None and state.window.attempts == 1
    assert state.window.expected_at == now.replace(microsecond=0) + timedelta(seconds=20)


def test_a_run_ending_while_a_worker_writes_the_snapshot_does_not_break_it(
        dotagent_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker thread writes supervisor.json by iterating the running runs; the loop thread
    # removed a finished run from that dict without the lock, so the worker's iteration
    # failed ("dictionary changed size during iteration") and its run was never recorded
    # (the soak hit it once in 21,600 runs).
    import threading
    from concurrent.futures import Future

    from dotagent.runner.lifecycle import AgentBusy
    from dotagent.state.supervisor import ProcessInfo, ProcessOwner

    _agent(dotagent_home, "one", "*:*:0/10")
    _agent(dotagent_home, "two", "*:*:0/10")
    daemon = _daemon(dotagent_home)
    daemon.timer = _Timer()  # type: ignore[assignment]
    now = datetime.now(UTC)
    daemon.rescan(now)
    runs = {}
    for entry in daemon.entries:
        run = daemon_loop._Running(entry, now, now, StopRequest())
        run.processes[1] = ProcessInfo(
            id=1, pid=os.getpid(), kind="agent",
            owner=ProcessOwner(agent=entry.agent, schedule="s"), label=entry.agent,
            started_at=now, deadline_seconds=10, pgid=os.getpid(), command="x")
        runs[entry.agent] = daemon.running[entry.agent] = run
    iterating, mutated = threading.Event(), threading.Event()
    real_aged = ProcessInfo.aged

    def aged(self: ProcessInfo, at: datetime) -> ProcessInfo:
        iterating.set()
        mutated.wait(0.5)  # the loop's change lands now, if nothing keeps it out
        return real_aged(self, at)

    monkeypatch.setattr(ProcessInfo, "aged", aged)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            daemon._write_snapshot()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert iterating.wait(5)
    done: Future[Any] = Future()
    done.set_exception(AgentBusy("busy"))
    daemon._finished(runs["two"], done)  # the loop removes a finished run
    mutated.set()
    thread.join(5)
    assert errors == []
    assert "two" not in daemon.running
    daemon.executor.shutdown(wait=True)
