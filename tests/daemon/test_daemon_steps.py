"""The daemon's decisions driven step by step with an injected clock (in-process; the runs are
real, through the one lifecycle): a suspend, wall-clock jumps, power deferral, and a loop
that was busy when a run ended. The wall-clock timer is checked against the kernel."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_kit import events_of, history_rows, write_agent

from dotagent.config import load_config
from dotagent.daemon.loop import POWER_RECHECK, Daemon
from dotagent.daemon.wallclock import WallTimer
from dotagent.paths import Home
from dotagent.power import probe_linux
from dotagent.runner.lifecycle import agent_lock
from dotagent.state.heartbeat import HeartbeatStore
from dotagent.state.windows import WindowStore

T0 = datetime(2030, 1, 7, 10, 1, tzinfo=UTC)  # a Monday; 10:00 is a window of `*:0/10`


@dataclass
class FakeClock:
    """The wall clock is whatever the test says; the monotonic clock never moves (as in a
    suspend, where Linux stops it)."""

    t: datetime

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return 1000.0


class Harness:
    """A Daemon for the test's home, stepped inside one event loop. Every dispatch is
    recorded; `step` returns once the runs it dispatched have finished."""

    def __init__(self, home: Path, clock: FakeClock, **kwargs: Any) -> None:
        self.home = home
        self.clock = clock
        self.lines: list[str] = []
        env = dict(os.environ, DOTAGENT_HOME=str(home))
        config = load_config(Home(home)).require()
        self.daemon = Daemon(Home(home), config, env=env, clock=clock, zone=UTC,
                             log=self.lines.append, **kwargs)
        self.dispatched: list[tuple[str, datetime, int]] = []
        real = self.daemon.dispatch

        def spy(entry: Any, window: datetime | None, attempt: int, now: datetime) -> None:
            assert window is not None
            self.dispatched.append((entry.agent, window, attempt))
            real(entry, window, attempt, now)

        self.daemon.dispatch = spy  # type: ignore[method-assign]
        self.loop = asyncio.new_event_loop()
        self.daemon.timer = WallTimer(self.loop)

    def run(self, body: Callable[[], Any]) -> Any:
        async def go() -> Any:
            result = body()
            while self.daemon.running:
                await asyncio.sleep(0.01)
            return result

        return self.loop.run_until_complete(asyncio.wait_for(go(), 60))

    def step(self, at: datetime) -> datetime | None:
        self.clock.t = at
        return self.run(lambda: self.daemon.step(at))  # type: ignore[no-any-return]

    def windows(self) -> list[datetime]:
        return [w for _, w, _ in self.dispatched]

    def close(self) -> None:
        self.daemon.timer.close()
        self.daemon.executor.shutdown(wait=True)
        self.daemon.history.close()
        self.loop.close()


@pytest.fixture
def harness(home: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(home, FakeClock(T0), **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _every_ten_minutes(home: Path, name: str = "ten") -> Path:
    return write_agent(home / "agents", name, schedule="""
        type = "expression"
        expression = "*:0/10"
        """, script='echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/starts"\n')


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return T0.replace(hour=hh, minute=mm, second=ss)


# --------------------------------------------------------------------------------------
# Suspend and clock jumps
# --------------------------------------------------------------------------------------
def test_window_due_during_a_suspend_fires_once_on_resume(home: Path,
                                                          harness: Callable[..., Harness]
                                                          ) -> None:
    d = _every_ten_minutes(home)
    h = harness()
    h.step(at(10, 1))  # the catch-up of 10:00 (first sight, S14.1) ...
    assert h.windows() == [at(10, 0)]
    assert h.step(at(10, 1, 1)) == at(10, 10)  # ... then sleep until 10:10
    # The lid closes at 10:02 and opens at 10:25: the monotonic clock stood still, the wall
    # clock moved. The first step after resume fires the latest window passed, once.
    h.step(at(10, 25))
    assert h.windows() == [at(10, 0), at(10, 20)]
    assert h.step(at(10, 25, 1)) == at(10, 30)
    h.step(at(10, 29, 59))
    assert h.windows() == [at(10, 0), at(10, 20)]
    rows = history_rows(home, "ten")
    assert [r["window_at"] for r in rows] == [at(10, 0).timestamp(), at(10, 20).timestamp()]
    # The run happened "at" the injected wall clock: the agent saw it.
    assert [int(x) for x in (d / "starts").read_text().split()] == \
        [int(at(10, 1).timestamp()), int(at(10, 25).timestamp())]


def test_backward_clock_jump_does_not_fire_a_window_twice(home: Path,
                                                          harness: Callable[..., Harness]
                                                          ) -> None:
    _every_ten_minutes(home)
    h = harness()
    h.step(at(10, 1))
    h.step(at(10, 21))
    assert h.windows() == [at(10, 0), at(10, 20)]
    # NTP (or a person) sets the clock back 16 minutes: 10:10 and 10:20 come round again.
    wake = h.step(at(10, 5))
    assert wake is not None and wake <= at(10, 30)
    for moment in (at(10, 10), at(10, 10, 1), at(10, 20), at(10, 20, 30)):
        h.step(moment)
    assert h.windows() == [at(10, 0), at(10, 20)], "a window fired twice after the jump"
    h.step(at(10, 30))
    assert h.windows() == [at(10, 0), at(10, 20), at(10, 30)]
    assert len(history_rows(home, "ten")) == 3


def test_forward_clock_jump_runs_only_the_latest_window(home: Path,
                                                       harness: Callable[..., Harness]
                                                       ) -> None:
    _every_ten_minutes(home)
    h = harness()
    h.step(at(10, 1))
    h.step(at(11, 5))  # an hour ahead: five windows passed, the latest (11:00) runs
    assert h.windows() == [at(10, 0), at(11, 0)]
    h.step(at(11, 5, 1))
    assert len(h.windows()) == 2


def test_wall_timer_is_an_absolute_realtime_timer() -> None:
    """What makes the daemon fire on resume and re-plan after a clock change: the timerfd is
    on CLOCK_REALTIME (stopped neither by a suspend nor by SIGSTOP), armed with
    TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, at the wall-clock instant itself."""
    loop = asyncio.new_event_loop()
    timer = WallTimer(loop)
    try:
        assert timer.wall_clock_timer
        assert timer._fd is not None
        target = datetime.fromtimestamp(time.time() + 3600, UTC).replace(microsecond=0)

        async def arm_and_look() -> str:
            waiter = asyncio.ensure_future(timer.wait(target))
            await asyncio.sleep(0)
            info = Path(f"/proc/self/fdinfo/{timer._fd}").read_text()
            timer.poke()
            await waiter
            return info

        info = loop.run_until_complete(asyncio.wait_for(arm_and_look(), 10))
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        assert fields["clockid"].strip() == "0"  # CLOCK_REALTIME
        assert fields["settime flags"].strip() == "03"  # ABSTIME | CANCEL_ON_SET
        # it_value is the time left until the instant; about an hour.
        seconds = int(fields["it_value"].strip().strip("()").split(",")[0])
        assert 3500 < seconds <= 3600

        # An instant already passed returns at once; one ahead, not before it.
        loop.run_until_complete(asyncio.wait_for(timer.wait(T0 - timedelta(days=3650)), 10))
        soon = datetime.fromtimestamp(time.time() + 0.2, UTC)
        loop.run_until_complete(asyncio.wait_for(timer.wait(soon), 10))
        assert time.time() >= soon.timestamp()
        assert timer.planned_wakes == 3
    finally:
        timer.close()
        loop.close()


# --------------------------------------------------------------------------------------
# A run that ended while the loop was busy
# --------------------------------------------------------------------------------------
def test_windows_after_a_run_ended_are_caught_up_not_called_overlap(
        home: Path, harness: Callable[..., Harness]) -> None:
    write_agent(home / "agents", "quick", schedule="""
        type = "expression"
        expression = "*:*:0/1"
        """, script="exit 0\n")
    h = harness()
    start = T0.replace(microsecond=500_000)

    def dispatch_then_stall() -> None:
        h.daemon.step(start)
        run = h.daemon.running["quick"]
        assert run.future is not None
        while not run.future.done():  # the loop is blocked: the run's end is not handled
            time.sleep(0.01)
        h.clock.t = start + timedelta(seconds=3)  # ... for three seconds

    h.run(dispatch_then_stall)
    assert not events_of(home, "run_skipped_overlap"), \
        "windows after the run had ended were reported as overlapping it"
    h.step(start + timedelta(seconds=3))  # the latest window passed runs, once
    assert h.windows() == [T0, T0 + timedelta(seconds=3)]


# --------------------------------------------------------------------------------------
# Power
# --------------------------------------------------------------------------------------
def _power_tree(root: Path, online: bool) -> Path:
    ac, bat = root / "AC", root / "BAT0"
    for d in (ac, bat):
        d.mkdir(parents=True, exist_ok=True)
    (ac / "type").write_text("Mains\n")
    (ac / "online").write_text("1\n" if online else "0\n")
    (bat / "type").write_text("Battery\n")
    (bat / "capacity").write_text("64\n")
    return root


def test_on_battery_defers_and_fires_once_when_power_returns(
        home: Path, harness: Callable[..., Harness], tmp_path: Path) -> None:
    (home / "config.toml").write_text('[power]\non_battery = "defer"\n')
    _every_ten_minutes(home)
    tree = _power_tree(tmp_path / "power_supply", online=False)
    h = harness(power_probe=lambda: probe_linux(tree))

    assert h.step(at(10, 1)) == at(10, 1) + POWER_RECHECK  # re-check power, not wait 10 min
    assert h.windows() == []
    assert h.step(at(10, 3)) == at(10, 3) + POWER_RECHECK
    assert h.windows() == []
    assert sum("deferring ten/main: on battery" in line for line in h.lines) == 1
    assert WindowStore(Home(home)).latest("ten", "default") is None  # nothing burned

    _power_tree(tree, online=True)  # plugged in
    h.step(at(10, 5))
    assert h.dispatched == [("ten", at(10, 0), 1)]  # the deferred window, first attempt
    h.step(at(10, 5, 1))
    h.step(at(10, 7))
    assert len(h.dispatched) == 1
    record = WindowStore(Home(home)).latest("ten", "default")
    assert record is not None and record.state.attempts == 1
    assert [r["attempt"] for r in history_rows(home, "ten")] == [1]


# --------------------------------------------------------------------------------------
# Runs by other commands
# --------------------------------------------------------------------------------------
def test_a_window_run_by_someone_else_meanwhile_is_not_run_again(
        home: Path, harness: Callable[..., Harness]) -> None:
    """The daemon's attempt finds the agent lock held (`run-now` is running it); when the
    daemon looks again, that run has succeeded, which covers the window."""
    _every_ten_minutes(home)
    h = harness()
    with agent_lock(Home(home), "ten"):  # somebody else runs the agent
        h.step(at(10, 1))
    assert h.windows() == [at(10, 0)]
    assert any("skipped ten/main: agent 'ten' is already running" in x for x in h.lines)
    h.step(at(10, 1, 5))  # the window is left alone for a while: no retry at once
    assert len(h.dispatched) == 1
    # Their run ended at 10:01:20 with exit 0 (its heartbeat says so).
    beats = HeartbeatStore(Home(home))
    ran = int(at(10, 1, 10).timestamp())
    beats.start("ten", "default", [], ran)
    beats.finish("ten", "default", [], ran, ran + 10, 0, 10, succeeded=True)
    h.step(at(10, 2))
    h.step(at(10, 5))
    assert len(h.dispatched) == 1, "the window was run again although it had succeeded"
    h.step(at(10, 10))
    assert h.windows() == [at(10, 0), at(10, 10)]


def test_interval_anchor_follows_a_run_by_another_command(
        home: Path, harness: Callable[..., Harness]) -> None:
    """S14.21: an interval counts from the schedule's last start, whoever started it."""
    # No rescan backstop within the test (it would re-read every heartbeat anyway).
    (home / "config.toml").write_text("[daemon]\nrescan_minutes = 240\n")
    write_agent(home / "agents", "hourly", schedule="""
        type = "interval"
        interval_minutes = 60
        """, script="exit 0\n")
    h = harness()
    h.step(at(10, 1))  # never started: due at once
    assert len(h.dispatched) == 1
    # `dotagent run hourly` at 10:31 (a person, by hand).
    beats = HeartbeatStore(Home(home))
    ran = int(at(10, 31).timestamp())
    beats.start("hourly", "default", [], ran)
    beats.finish("hourly", "default", [], ran, ran + 1, 0, 1, succeeded=True)
    h.step(at(11, 1, 30))  # an hour after the daemon's run, but 30 minutes after the last
    assert len(h.dispatched) == 1
    h.step(at(11, 31))
    assert len(h.dispatched) == 2
