"""`dotagent daemon`: the long-lived process that fires every schedule at its instant.

The loop sleeps exactly until the next thing that can happen — a window, a retry, the rescan
backstop, the 03:00 retention sweep, a power re-check — on the wall clock (`WallTimer`), and is
woken early by a run ending, a manifest changing (inotify), SIGHUP or SIGTERM. Each wake
re-reads the clock and asks the pure scheduler (`daemon.tick`) what is due; runs go through
the one lifecycle (`runner.lifecycle.execute`) in worker threads, under the caps (V7).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from dotagent.audit import AuditLog, events
from dotagent.clock import Clock, SystemClock, from_epoch
from dotagent.config import Config
from dotagent.daemon.tick import Entry, apply_settlement, load_entries, record_skipped, refresh
from dotagent.daemon.wallclock import WallTimer
from dotagent.discovery import Discovery, discover, search_roots
from dotagent.errors import DotagentError
from dotagent.paths import Home
from dotagent.runner.lifecycle import AgentBusy, RunDeps, RunReport, RunRequest, execute
from dotagent.runner.process import StopRequest
from dotagent.schedule.windows import Decision, ScheduleState, WindowState
from dotagent.security.manifests import check_manifests
from dotagent.state.history import History
from dotagent.state.supervisor import ProcessInfo, ProcessOwner, SupervisorSnapshot
from dotagent.state.windows import WindowStore

__all__ = ["Daemon"]

DEBOUNCE_SECONDS = 0.25
POWER_RECHECK = timedelta(minutes=2)
SNAPSHOT_SECONDS = 2.0
# How long before its instant a run is handed to a worker, which prepares it and spawns the
# agent at the instant (dispatch precision: the preparation costs milliseconds, more on a
# busy machine, and would otherwise make every run that late).
PREPARE_AHEAD = timedelta(milliseconds=50)
RETENTION_HOUR = 3


@dataclass
class _Running:
    entry: Entry
    window: datetime | None
    started: datetime
    stop: StopRequest
    future: Future[RunReport] | None = None
    processes: dict[int, ProcessInfo] = field(default_factory=dict)


class Daemon:
    """One daemon for one home. `serve()` runs until SIGTERM/SIGINT (or `stop()`)."""

    def __init__(self, home: Home, config: Config, *, env: Mapping[str, str] | None = None,
                 clock: Clock | None = None, zone: tzinfo, log: Callable[[str], None],
                 power_probe: Callable[[], Any] | None = None) -> None:
        self.home = home
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.clock = clock or SystemClock()
        self.zone = zone
        self.log = log
        self.power_probe = power_probe
        self.audit = AuditLog(home)
        self.windows = WindowStore(home, zone=zone)
        self.history = History(home)
        self.snapshot = SupervisorSnapshot(home, zone=zone)
        self.entries: list[Entry] = []
        self.found: Discovery | None = None
        self.running: dict[str, _Running] = {}
        self._proc_ids = 0
        # Guards `running` and `running[*].processes`: worker threads iterate them (the
        # supervisor snapshot) while the loop adds and removes runs.
        self._lock = threading.Lock()
        self._stopping: str | None = None
        self._rescan_due = True
        self._reload_due = False
        self._last_scan: datetime | None = None
        self._retention_done: str | None = None
        self._deferred: set[tuple[str, str]] = set()
        # schedule → (the state it was judged on, when, the instant it next needs a look)
        self._idle_until: dict[tuple[str, str], tuple[ScheduleState, datetime, datetime]] = {}
        self.executor = ThreadPoolExecutor(max_workers=config.daemon.max_concurrent_runs,
                                           thread_name_prefix="run")

    # ------------------------------------------------------------------ audit & logging
    def record(self, event: events.Event) -> None:
        try:
            self.audit.append(event)
        except (OSError, DotagentError) as exc:
            self.log(f"error: could not record {event.event_type} in the audit log: {exc}")

    # ------------------------------------------------------------------ scanning
    def rescan(self, now: datetime) -> None:
        found = discover(self.env, include_cwd=False)
        report = check_manifests(self.home, found, now, audit=self.audit)
        for name in report.phantoms:
            self.log(f"warning: phantom agent {name!r} recorded")
        for d in report.drifts:
            self.log(f"warning: manifest of {d.agent!r} changed since last seen (recorded)")
        for path in report.invalid:
            self.log(f"warning: manifest {path} is invalid (recorded; `dotagent doctor`)")
        self.found = found
        self.entries = load_entries(found, self.home, self.zone, windows=self.windows)
        self._idle_until.clear()
        self._last_scan = now
        self.log(f"scanned {len(found.agents)} agent(s), {len(self.entries)} schedule(s)")

    def watch_dirs(self) -> dict[Path, str]:
        """What to watch, and for what: each root (`dirs`: agent directories appearing or
        going), each agent directory (`manifest`: only its agent.toml matters — an agent
        writing files beside it must not cause rescans), and the home itself when
        `agents/` does not exist yet (`agents`)."""
        out: dict[Path, str] = {}
        agents = self.home.root / "agents"
        if not agents.is_dir():
            out[self.home.root] = "agents"
        for root in search_roots(self.env, include_cwd=False):
            if root.is_dir():
                out.setdefault(root, "dirs")
                with contextlib.suppress(OSError):
                    for child in sorted(root.iterdir()):
                        if child.is_dir():
                            out.setdefault(child, "manifest")
        return out

    @staticmethod
    def relevant(kind: str, name: str | None) -> bool:
        if kind == "manifest":
            return name in (None, "agent.toml")
        if kind == "agents":
            return name == "agents"
        return True

    # ------------------------------------------------------------------ one step
    def step(self, now: datetime) -> datetime | None:
        """Dispatch what is due at `now`; return when to look again."""
        cfg = self.config
        if self._reload_due:
            self._reload_due = False
            self._rescan_due = True
        backstop = timedelta(minutes=cfg.daemon.rescan_minutes)
        if self._rescan_due or self._last_scan is None or now >= self._last_scan + backstop:
            self._rescan_due = False
            self.rescan(now)
        wakes: list[datetime] = []
        assert self._last_scan is not None
        wakes.append(self._last_scan + backstop)
        source = None
        deferred_now: set[tuple[str, str]] = set()
        due_now: list[tuple[datetime, int, Entry, Decision, datetime | None]] = []
        for i, entry in enumerate(self.entries):
            if entry.agent in self.running or self._stopping:
                continue  # overlaps are judged when the run ends
            # Known to be idle until a later instant, with the state it was judged on: no
            # need to judge it again (a wake used to decide every schedule: with 200 agents
            # firing every few seconds, that was half of the daemon's CPU).
            known = self._idle_until.get(entry.key)
            if known is not None and known[0] is entry.state and \
                    known[1] <= now < known[2] - PREPARE_AHEAD:
                wakes.append(known[2] - PREPARE_AHEAD)
                continue
            decision = entry.decide(now)
            if decision.action in ("missed", "give_up"):
                settled = None
                try:
                    settled = apply_settlement(entry, decision, windows=self.windows,
                                               record=self.record, now=now)
                except DotagentError as exc:
                    self.log(f"error: {exc.message}")
                # The settled state from here on: planning the next wake from the stale
                # entry would see the window as still due and wake again at once.
                entry = self.entries[i] = refresh(entry, self.home, self.windows,
                                                  window=settled)
                decision = entry.decide(now)
            start_at: datetime | None = None
            if decision.action not in ("run", "retry"):
                due = entry.next_due(now)
                if due is None:
                    continue
                if due - now > PREPARE_AHEAD:
                    self._idle_until[entry.key] = (entry.state, now, due)
                    wakes.append(due - PREPARE_AHEAD)
                    continue
                # Due within PREPARE_AHEAD: dispatch now and spawn at `due`, so that the
                # run's bookkeeping (lock, heartbeat, history, log) happens before the
                # instant instead of delaying the agent past it.
                decision = entry.decide(due)
                if decision.action not in ("run", "retry"):
                    wakes.append(due)
                    continue
                start_at = due
            assert decision.window is not None
            due_now.append((start_at or decision.window, i, entry, decision, start_at))
        # The longest-waiting first: under the cap, schedules late in the list must not
        # wait behind the early ones every time.
        due_now.sort(key=lambda item: (item[0], item[1]))
        for _, _, entry, decision, start_at in due_now:
            if entry.agent in self.running:
                continue  # another schedule of this agent went first
            if len(self.running) >= cfg.daemon.max_concurrent_runs:
                break  # a slot frees when a run ends, which wakes the loop
            if source is None:
                source = self._power()
            if self._defer(entry, source):
                deferred_now.add(entry.key)
                continue
            record_skipped(entry, decision, record=self.record)
            self.dispatch(entry, decision.window, decision.attempt, now, start_at=start_at)
        if deferred_now:
            wakes.append(now + POWER_RECHECK)
            for key in deferred_now - self._deferred:
                self.log(f"deferring {key[0]}/{key[1]}: on battery")
        self._deferred = deferred_now
        wakes.append(self._next_retention(now))
        return min(wakes) if wakes else None

    def _power(self) -> Any:
        from dotagent.power import UNKNOWN, probe, probe_needed

        p = self.config.power
        overrides = [e.schedule.on_battery for e in self.entries
                     if getattr(e.schedule, "on_battery", None)]
        if not probe_needed(p.on_battery, p.min_battery_percent, overrides):
            return UNKNOWN
        return (self.power_probe or probe)()

    def _defer(self, entry: Entry, source: Any) -> bool:
        from dotagent.power import should_defer

        p = self.config.power
        policy = getattr(entry.schedule, "on_battery", None) or p.on_battery
        return should_defer(source, policy, p.min_battery_percent)

    def _next_retention(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        at = local.replace(hour=RETENTION_HOUR, minute=0, second=0, microsecond=0)
        if at <= local or self._retention_done == at.date().isoformat():
            at = at + timedelta(days=1)
            at = at.replace(hour=RETENTION_HOUR)
        return at.astimezone(now.tzinfo)

    def retention(self, now: datetime) -> None:
        local = now.astimezone(self.zone)
        if local.hour != RETENTION_HOUR or self._retention_done == local.date().isoformat():
            return
        self._retention_done = local.date().isoformat()
        st = self.config.state
        try:
            swept = self.windows.sweep(now, st.window_retention_days)
            rows = self.history.sweep(now.timestamp(), st.history_retention_days)
            self.log(f"retention sweep: windows {swept}, history rows deleted {rows}")
        except DotagentError as exc:
            self.log(f"error: retention sweep: {exc.message}")

    # ------------------------------------------------------------------ runs
    def dispatch(self, entry: Entry, window: datetime | None, attempt: int,
                 now: datetime, *, start_at: datetime | None = None) -> None:
        """Hand the attempt to a worker; with `start_at`, the worker prepares the run at once
        and spawns the agent at that instant."""
        assert window is not None
        stop = StopRequest()
        run = _Running(entry, window, max(now, start_at or now), stop)
        with self._lock:  # worker threads iterate `running` (the supervisor snapshot)
            self.running[entry.agent] = run
        request = RunRequest(loaded=entry.loaded, schedule=entry.schedule, source="daemon",
                             window=entry.window(window), policy=entry.policy,
                             stdin_devnull=True, stop=stop,
                             not_before=None if start_at is None else start_at.timestamp())
        deps = RunDeps(home=self.home, audit=self.audit, env=self.env, history=self.history,
                       windows=self.windows, say=lambda text: self.log(text.strip()),
                       on_spawn=self._spawned, on_exit=self._exited,
                       grace=float(self.config.daemon.shutdown_grace_seconds))
        self.log(f"dispatching {entry.agent}/{entry.schedule.id} attempt {attempt}/"
                 f"{entry.policy.max_attempts} (window {window.isoformat()})")
        loop = asyncio.get_running_loop()
        future = self.executor.submit(execute, request, deps)
        run.future = future
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._finished, run, f))

    def _spawned(self, request: RunRequest, pid: int, argv: list[str], executable: str) -> None:
        with self._lock:
            self._proc_ids += 1
            run = self.running.get(request.agent)
            info = ProcessInfo(
                id=self._proc_ids, pid=pid, kind="agent",
                owner=ProcessOwner(agent=request.agent, schedule=request.schedule.id),
                label=f"{request.agent}.{request.schedule.id}", started_at=self.clock.now(),
                deadline_seconds=request.loaded.manifest.agent.timeout_seconds, pgid=pid,
                command=" ".join([executable, *argv[1:]]))
            if run is not None:
                run.processes[pid] = info
        self._write_snapshot()

    def _exited(self, request: RunRequest, pid: int) -> None:
        with self._lock:
            run = self.running.get(request.agent)
            if run is not None:
                run.processes.pop(pid, None)
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        with self._lock:
            now = self.clock.now()
            entries = [p.aged(now) for r in self.running.values() for p in r.processes.values()]
        try:
            if entries:
                self.snapshot.write(entries)
            else:
                self.snapshot.delete()
        except (OSError, DotagentError) as exc:
            self.log(f"error: cannot write {self.snapshot}: {exc}")

    def _finished(self, run: _Running, future: Future[RunReport]) -> None:
        agent = run.entry.agent
        with self._lock:
            self.running.pop(agent, None)
        run.stop.close()  # its pipe: two descriptors per run, leaked until now
        known: WindowState | None = None  # the run's window as the run left it
        try:
            report = future.result()
            known = report.window
            o = report.outcome
            state = "aborted by preflight" if o is None else (
                "ok" if o.ok else f"exit {o.exit_code}{' (timed out)' if o.timed_out else ''}")
            self.log(f"finished {agent}/{run.entry.schedule.id}: {state}")
        except AgentBusy as exc:
            self.log(f"skipped {agent}/{run.entry.schedule.id}: {exc.message}")
        except Exception as exc:  # a run that could not begin (log/heartbeat unwritable)
            self.log(f"error: {agent}/{run.entry.schedule.id} could not run: {exc}")
        now = self.clock.now()
        for i, entry in enumerate(self.entries):
            if entry.agent == agent:
                mine = entry.key == run.entry.key
                self.entries[i] = refresh(entry, self.home, self.windows,
                                          window=known if mine else None)
        if not self._stopping:
            self._skip_overlaps(agent, run.started, now)
        self.timer.poke()

    def _skip_overlaps(self, agent: str, started: datetime, now: datetime) -> None:
        """Windows of `agent` that came due while it ran are skipped, never queued: one
        `run_skipped_overlap` per episode, with the count (V7)."""
        for i, entry in enumerate(self.entries):
            if entry.agent != agent:
                continue
            decision = entry.decide(now)
            if decision.action != "run" or decision.window is None or \
                    decision.window <= started:
                continue
            count = 1 + decision.skipped
            skipped = WindowState(expected_at=decision.window, missed=True)
            try:
                self.windows.save(agent, entry.schedule.slug, entry.schedule.id, skipped)
            except DotagentError as exc:
                self.log(f"error: {exc.message}")
            self.record(events.RunSkippedOverlap(
                agent=agent, schedule=entry.schedule.id,
                reason=f"{count} window(s) came due while the agent was still running "
                       f"(latest {decision.window.isoformat()}); skipped, not queued"))
            self.entries[i] = refresh(entry, self.home, self.windows, window=skipped)

    # ------------------------------------------------------------------ start / stop
    def recover(self, now: datetime) -> None:
        """After a crash: reap orphaned groups, account for runs that never finished."""
        from dotagent.state.supervisor import sweep_orphans

        sweep = sweep_orphans(self.home, os.getpid(), now,
                              grace=float(self.config.daemon.shutdown_grace_seconds))
        for result in sweep.reaped:
            self.record(events.OrphanReaped(**result.event_fields()))
            self.log(f"reaped orphaned process group {result.pid} ({result.label})")
        if sweep.snapshot_error:
            self.log(f"warning: {sweep.snapshot_error}")
        try:
            interrupted = self.history.mark_interrupted(own_pid=os.getpid())
        except DotagentError as exc:
            self.log(f"error: {exc.message}")
            interrupted = []
        for row in interrupted:
            started = from_epoch(row.started_at)
            self.record(events.RunInterrupted(
                agent=row.agent, schedule=row.schedule,
                reason=f"found unfinished after the daemon stopped without cleaning up (run "
                       f"{row.id}, started {started.isoformat()})"))
            if row.window is None:
                continue
            # The interrupted attempt counts: the retry policy applies, and the window is
            # never fired again as if new.
            expected = from_epoch(row.window)
            current = self.windows.load(row.agent, row.slug, expected) or \
                WindowState(expected_at=expected)
            if current.attempts >= row.attempt:
                continue
            state = replace(current, attempts=row.attempt, last_attempt_at=started,
                            last_exit_code=-1)
            with contextlib.suppress(DotagentError):
                self.windows.save(row.agent, row.slug, row.schedule, state,
                                  stderr="interrupted: the daemon stopped during this attempt")

    def stop(self, reason: str) -> None:
        if self._stopping is None:
            self._stopping = reason
            self.log(f"daemon stopping ({reason})")
            for run in list(self.running.values()):
                run.stop.request(signal.SIGTERM)
        else:  # asked twice: no more grace
            for run in list(self.running.values()):
                run.stop.request(signal.SIGTERM)
        self.timer.poke()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = WallTimer(loop)
        loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        watcher = asyncio.ensure_future(self._watch())
        try:
            while not self._stopping:
                now = self.clock.now()
                self.retention(now)
                wake = self.step(now)
                if self._stopping:
                    break
                await self.timer.wait(wake)
            while self.running:  # each run records itself as interrupted
                await self.timer.wait(None)
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            self.timer.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.executor.shutdown(wait=True)
            with contextlib.suppress(OSError, DotagentError):
                self.snapshot.delete()
            self.history.close()

    def _sighup(self) -> None:
        self.log("SIGHUP: re-reading config.toml and the manifests")
        self.reload_config()
        self.record(events.ConfigReloaded(reason="SIGHUP"))
        self._reload_due = True
        self.timer.poke()

    def reload_config(self) -> None:
        from dotagent.config import load_config

        result = load_config(self.home)
        if result.config is None:
            for problem in result.errors:
                self.log(f"error: {problem}")
            self.log("config.toml has errors: keeping the previous configuration")
            return
        self.config = result.config

    async def _watch(self) -> None:
        """inotify on the roots and agent directories; a burst of events (an editor's save)
        becomes one rescan DEBOUNCE_SECONDS after the last of them."""
        try:
            from asyncinotify import Inotify, Mask
        except ImportError:  # not Linux: the rescan backstop is the only watcher
            return
        mask = (Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO |
                Mask.CLOSE_WRITE | Mask.ATTRIB | Mask.DELETE_SELF | Mask.MOVE_SELF)
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with Inotify() as inotify:
                kinds: dict[str, str] = {}
                for d, kind in self.watch_dirs().items():
                    with contextlib.suppress(OSError):
                        inotify.add_watch(d, mask)
                        kinds[str(d)] = kind

                def wanted(event: Any, kinds: dict[str, str] = kinds) -> bool:
                    watched = str(event.watch.path) if event.watch is not None else ""
                    name = event.name.name if event.name is not None else None
                    return self.relevant(kinds.get(watched, "dirs"), name)

                while not wanted(await inotify.get()):  # the first event of a burst
                    pass
                while True:
                    try:
                        await asyncio.wait_for(inotify.get(), DEBOUNCE_SECONDS)
                    except TimeoutError:
                        break
            self._rescan_due = True
            loop.call_soon(self.timer.poke)


def default_log(text: str) -> None:
    from dotagent.cli import _streams

    _streams.say(f"[dotagent daemon] {text}\n")


__all__ += ["default_log"]
_ = sys  # the daemon's stderr is its log until the JSON daemon log lands
