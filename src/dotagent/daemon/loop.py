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
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from dotagent.alerts.seam import LadderOwnsGivenUp, OutboxSender
from dotagent.alerts.service import DAEMON_WIDE, Alerts
from dotagent.alerts.summary import SummaryLine
from dotagent.audit import AuditLog, events
from dotagent.clock import Clock, SystemClock, from_epoch
from dotagent.config import MAX_CONCURRENT_RUNS, Config
from dotagent.daemon.settle import PauseView, active_pause, hold_wakes, pause_verdict, settle
from dotagent.daemon.tick import Entry, apply_settlement, load_entries, record_skipped, refresh
from dotagent.daemon.wallclock import WallTimer
from dotagent.discovery import Discovery, discover, search_roots
from dotagent.display import printable, quote_name
from dotagent.errors import DotagentError
from dotagent.notify.outbox import Outbox
from dotagent.paths import Home
from dotagent.plugins.hooks import PluginHooks
from dotagent.runner.lifecycle import AgentBusy, RunDeps, RunReport, RunRequest, execute
from dotagent.runner.process import StopRequest
from dotagent.schedule.windows import (
    Decision,
    IntervalRule,
    ScheduleState,
    WindowState,
    health,
)
from dotagent.secrets import LoadCancelled, SecretStore, load_secrets
from dotagent.security.approval import check_approvals
from dotagent.security.manifests import CacheReport, check_manifests
from dotagent.security.plugins import check_plugins
from dotagent.security.trust import check_signatures, without
from dotagent.state.heartbeat import HeartbeatStore
from dotagent.state.history import History
from dotagent.state.supervisor import ProcessInfo, ProcessOwner, SupervisorSnapshot
from dotagent.state.windows import WindowStore

__all__ = ["Daemon", "logger_log"]

DEBOUNCE_SECONDS = 0.25
POWER_RECHECK = timedelta(minutes=2)
SNAPSHOT_SECONDS = 2.0
# On shutdown, queued notifications get this long to leave before the daemon exits.
NOTIFY_DRAIN_SECONDS = 12.0
HOLD_OFF = timedelta(seconds=30)  # before a window whose run could not begin is tried again
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
    ended: datetime | None = None  # when `execute` returned (set by the worker thread)
    catch_up: Decision | None = None  # the decision it runs on (windows it passes over)


def _shown_command(executable: str, argv: list[str]) -> str:
    """supervisor.json's `command`, with every loaded secret value written `[REDACTED]` (an
    argument may hold one; the file is state, and state never keeps a secret)."""
    from dotagent.redaction import redact

    return redact(" ".join([executable, *argv[1:]]))


class _ObservedAudit(AuditLog):
    """The daemon's audit log: every event it (or a run, or the manifest check) records is
    also shown to `observe`, which routes the daemon-wide ones to `[[notifiers]]`."""

    def __init__(self, home: Home, observe: Callable[[events.Event], None],
                 announce: Callable[[str], None]) -> None:
        super().__init__(home, announce=announce)
        self._observe = observe

    def append(self, event: events.Event, *, now: datetime | None = None,
               severity: events.Severity | None = None) -> str:
        line = super().append(event, now=now, severity=severity)
        if event.event_type in DAEMON_WIDE:
            self._observe(event)
        return line


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
        self.audit: AuditLog = _ObservedAudit(home, self._daemon_wide, self._announced)
        # Notices leave from their own thread: a slow notifier never delays a dispatch.
        self._notice_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify")
        self._secrets_pool: ThreadPoolExecutor | None = None  # SIGHUP's reloads
        # One reload at a time: SIGHUPs meanwhile ask for one more (`_secrets_again`), and
        # stopping calls off the one in flight (its `op` is killed, nothing is recorded).
        self._secrets_future: Future[None] | None = None
        self._secrets_again = False
        self._secrets_cancel = threading.Event()
        self._alert_sender = OutboxSender(None)  # its outbox is made below
        self.alerts = Alerts(home, config, self._alert_sender, zone=zone, log=log,
                             record=self.record, submit=self._submit_notice,
                             hooks=self._alert_hooks)
        self.windows = WindowStore(home, zone=zone)
        self.history = History(home)
        # `state/paused.json`, re-read when it changes (a stat per step): `pause` and `resume`
        # take effect without a restart, and SIGUSR1 (which they send) wakes the loop.
        self.pauses = PauseView(home)
        self._pause_generation = 0
        self._paused: set[tuple[str, str]] = set()  # schedules paused at the last step
        # Loaded by `load_secrets()` (at start, then on every SIGHUP); runs get it in RunDeps.
        self.secrets: SecretStore = SecretStore.empty()
        self.snapshot = SupervisorSnapshot(home, zone=zone)
        self.entries: list[Entry] = []
        self.found: Discovery | None = None
        self.running: dict[str, _Running] = {}
        self._proc_ids = 0
        # `running` is changed by the loop and read by worker threads (supervisor.json):
        # changes and reads hold `_lock`.
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._busy: asyncio.Event | None = None  # set while something runs (serve only)
        self._stopping: str | None = None
        self._rescan_due = True
        self._reload_due = False
        self._last_scan: datetime | None = None
        self._watch_checked: datetime | None = None  # the scan the watches were compared to
        self._retention_done: str | None = None
        self._deferred: set[tuple[str, str]] = set()
        self._held: dict[tuple[str, str], tuple[datetime | None, datetime]] = {}
        self._unsaved: dict[tuple[str, str], WindowState] = {}
        # Never-run calendar schedules: just before the first window the daemon saw come
        # due (see ScheduleState.watched_since). Forgotten on restart, where nothing ran.
        self._watched_since: dict[tuple[str, str], datetime] = {}
        # schedule → (the state it was judged on, when, the instant it next needs a look)
        self._idle_until: dict[tuple[str, str], tuple[ScheduleState, datetime, datetime]] = {}
        # Threads are made on demand; the cap is `config.daemon.max_concurrent_runs`, counted
        # in `running`, so that a reload that raises it takes effect.
        self.executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_RUNS,
                                           thread_name_prefix="run")
        # Notifications leave on the outbox's own threads: a slow endpoint never holds a
        # run's worker (nor the agent's lock), so it never delays a dispatch.
        self.outbox = Outbox(home, self.audit, env=self.env, lookup=self.lookup,
                             clock=lambda: self.clock.now().timestamp(), background=True,
                             say=lambda text: self.log(text.strip()), on_plugin=self)
        # A `plugin` notifier's process, listed in supervisor.json while it runs (kind
        # `notify`): it outlives the run that fired it, so it is kept apart from `running`.
        self._notify_procs: dict[int, ProcessInfo] = {}
        self._alert_sender.outbox = self.outbox

    def lookup(self, name: str) -> str | None:
        """`${NAME}` in a notifier: the secrets store (when one is loaded), then the
        environment."""
        value = self.secrets.get(name)
        return value if value is not None else self.env.get(name)

    # ------------------------------------------------------------------ audit & logging
    def record(self, event: events.Event) -> None:
        try:
            self.audit.append(event)
        except (OSError, DotagentError) as exc:
            self.log(f"error: could not record {event.event_type} in the audit log: {exc}")

    # ------------------------------------------------------------------ alerts
    def _submit_notice(self, work: Callable[[], None]) -> None:
        try:
            self._notice_pool.submit(work)
        except RuntimeError:  # shutting down: deliver in this thread, bounded by its timeout
            work()

    def _alert_hooks(self, entry: Entry, message: Any) -> None:
        """An alert between runs (`stale`, a `given_up` reminder) to the agent's
        `[[on_failure]]` hooks, through the plugin client like a run's hooks (on the notice
        thread; each call bounded by its hook's timeout; the supervisor lists it)."""
        request = RunRequest(loaded=entry.loaded, schedule=entry.schedule, source="daemon",
                             stdin_devnull=True)
        hooks = PluginHooks(self.home, self.audit, self.env,
                            say=lambda text: self.log(text.strip()),
                            on_spawn=lambda _r, pid, argv, exe, _k, deadline:
                                self.spawned(message, pid, argv, exe, deadline),
                            on_exit=lambda _r, pid: self.exited(pid),
                            grace=float(self.config.daemon.shutdown_grace_seconds))
        hooks.notice(request, message.event, message.body)

    def _daemon_wide(self, event: events.Event) -> None:
        try:
            self.alerts.daemon_event(event, self.clock.now())
        except Exception as exc:  # routing a notice must never break the recording of it
            self.log(f"error: daemon-wide notice for {event.event_type} failed: {exc}")

    def _announced(self, text: str) -> None:
        """A critical event the audit writer recorded on its own (a broken chain)."""
        import re

        self.log(f"warning: {text.strip()}")
        kind = re.search(r"recorded as ([a-z_]+)", text)
        try:
            self.alerts.daemon_notice(kind.group(1) if kind else "audit_chain_broken",
                                      text.strip(), self.clock.now())
        except Exception as exc:
            self.log(f"error: daemon-wide notice failed: {exc}")

    def alert_step(self, now: datetime) -> datetime | None:
        """After dispatch: the health sweep, the daily summary, the digest at the end of
        quiet hours. Returns the next instant alerts need the loop (None: never)."""
        alerts = self.alerts
        try:
            alerts.flush_held(now)
            alerts.sweep(self.entries, now, skip=self._deferred | self._paused)
            day = alerts.summary_due(now)
            if day is not None:
                lines = [SummaryLine(e.agent, e.schedule.id, h.state, h.reason)
                         for e in self.entries
                         for h in (health(e.rule, e.state, e.policy, now),)]
                alerts.send_summary(day, lines, now)
                self.log(f"daily summary for {day.isoformat()} sent")
            return alerts.next_wake(now)
        except Exception as exc:  # alerts must never take the scheduler down
            self.log(f"error: alerts: {''.join(traceback.format_exception(exc)).rstrip()}")
            return None

    # ------------------------------------------------------------------ scanning
    def rescan(self, now: datetime) -> None:
        """Discover the manifests, compare them with the cache (drift, phantoms: audited),
        and rebuild the entries. A cache or audit log that cannot be written (a full or
        read-only state directory) is reported and the scan goes on: the comparison is
        made again, and recorded then, at the next scan."""
        found = discover(self.env, include_cwd=False)
        try:
            plugins = check_plugins(self.home, found, now, env=self.env, audit=self.audit)
        except (OSError, DotagentError) as exc:
            self.log(f"error: cannot check the plugins against "
                     f"{self.home.state_dir / 'known_plugins.json'}: {exc}")
        else:
            for drift in plugins.drifts:
                self.log(f"warning: plugin {quote_name(drift.name)} changed since first seen "
                         "(recorded)")
        report: CacheReport | None = None
        try:
            report = check_manifests(self.home, found, now, audit=self.audit)
        except (OSError, DotagentError) as exc:
            message = exc.message if isinstance(exc, DotagentError) else str(exc)
            self.log(f"error: cannot check the manifests against "
                     f"{self.home.state_dir / 'known_manifests.json'}: {message}")
        else:
            for name in report.phantoms:
                self.log(f"warning: phantom agent {quote_name(name)} recorded")
            for d in report.drifts:
                self.log(f"warning: manifest of {quote_name(d.agent)} changed since last "
                         "seen (recorded)")
            for path in report.invalid:
                self.log(f"warning: manifest {printable(str(path))} is invalid (recorded; "
                         "`dotagent doctor`)")
        found = self._trusted(found, now, report)
        self.found = found
        entries = load_entries(found, self.home, self.zone, windows=self.windows)
        current = {e.key for e in entries}
        for key in [k for k in self._watched_since if k not in current]:
            del self._watched_since[key]  # gone: if it comes back, it is new again
        for e in entries:
            if e.key not in self._watched_since and _never_ran(e) and \
                    not isinstance(e.rule, IntervalRule):
                due = e.decide(now)
                first = due.window if due.action in ("run", "missed") else None
                self._watched_since[e.key] = (first - _INSTANT) if first is not None else now
        self.entries = [self._overlay(e) for e in entries]
        self._idle_until.clear()
        self._last_scan = now
        self.log(f"scanned {len(found.agents)} agent(s), {len(self.entries)} schedule(s)")

    def _trusted(self, found: Discovery, now: datetime, cache: CacheReport | None) -> Discovery:
        """`found` without the agents `[trust]` keeps from running: a manifest whose signature
        does not verify (security/trust.py; audited once, critical, daemon-wide notifiers)
        or that waits for approval (security/approval.py). When a check itself fails, no
        agent runs until the next scan: failing open would defeat the setting."""
        trust = self.config.trust
        if not (trust.require_signed_manifests or trust.approve_new_agents):
            return found
        out: dict[str, str] = {}
        try:
            if trust.require_signed_manifests:
                signed = check_signatures(self.home, found, trust, now, audit=self.audit)
                for name, why in signed.refused.items():
                    self.log(f"warning: agent {quote_name(name)} is not run: {why}")
                out.update(signed.refused)
            if trust.approve_new_agents:
                names = list(found.agents) if cache is None else \
                    [*cache.phantoms, *(d.agent for d in cache.drifts)]
                approvals = check_approvals(self.home, found, now, unapproved=lambda: names,
                                            audit=self.audit)
                for name, waiting in approvals.waiting.items():
                    if name not in out:
                        self.log(f"warning: agent {quote_name(name)} is not run: it waits "
                                 f"for approval ({waiting.reason}; `dotagent approve`)")
                        out[name] = waiting.reason
        except (OSError, DotagentError) as exc:
            message = exc.message if isinstance(exc, DotagentError) else str(exc)
            self.log(f"error: cannot apply [trust]: {message}; no agent runs until the next "
                     "scan")
            return without(found, list(found.agents))
        return without(found, out)

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
            # Its signature too: signing an agent lets it run without waiting for a rescan.
            return name in (None, "agent.toml", "agent.toml.minisig")
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
        pauses = self._pause_step(now, wakes)
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
            if pauses:
                verdict = pause_verdict(entry, decision, pauses, now)
                if verdict is not None:
                    wakes.extend(self._while_paused(i, entry, decision, verdict, now))
                    continue
            held = self._held_until(entry.key, decision.window, now)
            settled: WindowState | None = None  # the window as settled just now
            if held is None and decision.action in ("missed", "give_up"):
                try:
                    settled = apply_settlement(entry, decision, windows=self.windows,
                                               record=self.record, now=now)
                except DotagentError as exc:
                    # Recorded in the audit log, but not in its window file: remembered here,
                    # so that it is not settled (and audited) again at every step.
                    self.log(f"error: {exc.message}")
                    self._unsaved[entry.key] = settled = _settled(entry, decision)
                else:
                    self._unsaved.pop(entry.key, None)
            if held is not None:
                wakes.extend(self._held_wakes(entry, held, decision.window or now))
                continue
            if decision.action in ("missed", "give_up"):
                # The settled state from here on: planning the next wake from the stale
                # entry would see the window as still due and wake again at once.
                entry = self.entries[i] = self._refresh(entry, window=settled)
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
                if decision.action not in ("run", "retry") or \
                        (pauses and pause_verdict(entry, decision, pauses, due) is not None):
                    wakes.append(due)  # a paused window is settled when it is due
                    continue
                held = self._held_until(entry.key, decision.window, now)
                if held is not None:  # it could not begin a moment ago
                    wakes.extend(self._held_wakes(entry, held, decision.window or due))
                    continue
                start_at = due
            # Another command (`run`, `run-now`, `tick`) may have run the schedule since the
            # daemon last looked: its heartbeat says so (a success that covers the window,
            # an interval anchor that moved).
            fresh = self._with_heartbeat(entry)
            if fresh is not entry:
                entry = self.entries[i] = fresh
                decision = entry.decide(start_at or now)
                if decision.action not in ("run", "retry"):
                    due = entry.next_due(now)
                    if due is not None:
                        wakes.append(due)
                    continue
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
            self.dispatch(entry, decision.window, decision.attempt, now, start_at=start_at,
                          catch_up=decision)
        if deferred_now:
            wakes.append(now + POWER_RECHECK)
            for key in deferred_now - self._deferred:
                self.log(f"deferring {key[0]}/{key[1]}: on battery")
        self._deferred = deferred_now
        wakes.append(self._next_retention(now))
        alert_wake = self.alert_step(now)
        if alert_wake is not None:
            wakes.append(max(alert_wake, now))
        return min(wakes) if wakes else None

    def _pause_step(self, now: datetime, wakes: list[datetime]) -> dict[str, Any]:
        """The pause table for this step (re-read if the file changed); notes which
        schedules are paused (the health sweep skips them) and when a pause ends (a wake)."""
        table = self.pauses.table()
        if self.pauses.generation != self._pause_generation:
            self._pause_generation = self.pauses.generation
            self._idle_until.clear()
            live = [f"{k} (until {'resumed' if p.until is None else from_epoch(p.until)})"
                    for k, p in sorted(table.items()) if p.active(now.timestamp())]
            self.log(f"pauses: {', '.join(live) if live else 'none'}")
        if not table:
            self._paused = set()
            return table
        ts = now.timestamp()
        self._paused = {e.key for e in self.entries
                        if active_pause(table, e.agent, e.schedule.id, ts) is not None}
        wakes.extend(from_epoch(p.until) for p in table.values()
                     if p.until is not None and p.until > ts)
        return table

    def _while_paused(self, i: int, entry: Entry, decision: Decision,
                      verdict: tuple[str, Any], now: datetime) -> list[datetime]:
        """A paused schedule's due window is settled unrun (no audit line: `agent_paused`
        says why); a retry or give-up waits for the pause to end. Returns the wakes."""
        kind, pause = verdict
        if kind == "hold":
            return hold_wakes(entry, pause, now)
        assert decision.window is not None
        try:
            state = settle(entry, decision.window, "paused", self.windows)
        except DotagentError as exc:
            self.log(f"error: {exc.message}")
            state = self._unsaved[entry.key] = WindowState(expected_at=decision.window,
                                                            settled="paused")
        else:
            self._unsaved.pop(entry.key, None)
        self.log(f"paused: {entry.agent}/{entry.schedule.id} window "
                 f"{decision.window.isoformat()} settled without a run")
        entry = self.entries[i] = self._refresh(entry, window=state)
        due = entry.next_due(now)
        return [] if due is None else [max(due, now)]

    def _with_heartbeat(self, entry: Entry) -> Entry:
        """`entry` with its last start and last success as its heartbeat says now."""
        beat = HeartbeatStore(self.home).read(entry.agent, entry.schedule.slug)
        last_start = from_epoch(beat.started_at) if beat and beat.started_at else None
        last_success = (from_epoch(beat.last_success_at)
                        if beat and beat.last_success_at is not None else None)
        if (last_start, last_success) == (entry.state.last_start, entry.state.last_success):
            return entry
        return replace(entry, state=replace(entry.state, last_start=last_start,
                                            last_success=last_success))

    def _refresh(self, entry: Entry, *, window: WindowState | None = None) -> Entry:
        """`entry` with its state re-read. `window`: the latest window as the daemon has just
        written it, or keeps it in `_unsaved` — then the windows directory (every agent's
        files) is not listed again to find it."""
        if window is not None:
            return refresh(entry, self.home, self.windows, window=window)
        return self._overlay(refresh(entry, self.home, self.windows))

    def _overlay(self, entry: Entry) -> Entry:
        """`entry` with the window state the daemon could not write to its file (a full or
        read-only state directory), so that an attempt made or a window settled is not made
        or settled again while the disk refuses it. Forgotten once the file has caught up;
        lost on restart (then the file is all there is)."""
        watched = self._watched_since.get(entry.key)
        if watched is not None:
            if _never_ran(entry):
                entry = replace(entry, state=replace(entry.state, watched_since=watched))
            else:
                del self._watched_since[entry.key]
        mem = self._unsaved.get(entry.key)
        if mem is None:
            return entry
        disk = entry.state.window
        if disk is not None and (disk.expected_at > mem.expected_at or disk == mem):
            del self._unsaved[entry.key]
            return entry
        return replace(entry, state=replace(entry.state, window=mem))

    def _hold(self, key: tuple[str, str], window: datetime | None, now: datetime) -> datetime:
        """Leave `window` of `key` alone until HOLD_OFF from now: acting on it failed for a
        reason outside the agent (a full or read-only state directory; the agent run by
        somebody else), and trying again at once would spin. A newer window is not held."""
        until = now + HOLD_OFF
        self._held[key] = (window, until)
        return until

    def _held_until(self, key: tuple[str, str], window: datetime | None,
                    now: datetime) -> datetime | None:
        held = self._held.get(key)
        if held is None:
            return None
        if now >= held[1] or (window is not None and held[0] is not None and
                              window > held[0]):
            del self._held[key]  # expired, or a newer window came due
            return None
        return held[1] if held[0] == window else None

    @staticmethod
    def _held_wakes(entry: Entry, held: datetime, window: datetime) -> list[datetime]:
        """When to look again at a held `window`: when the hold ends, and at the next window
        (a newer window is not held)."""
        newer = _next_window(entry, window)
        return [held] if newer is None else [held, newer]

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
        from dotagent.state.logretention import sweep_logs

        try:
            swept = self.windows.sweep(now, st.window_retention_days)
            rows = self.history.sweep(now.timestamp(), st.history_retention_days)
            self.log(f"retention sweep: {len(swept.deleted)} window file(s) and {rows} "
                     f"history row(s) deleted")
            for path, why in swept.errors:
                self.log(f"error: retention sweep: cannot delete {path}: {why}")
        except DotagentError as exc:
            self.log(f"error: retention sweep: {exc.message}")
        logs = sweep_logs(self.home, now, self.config.logging)
        counts = logs.counts()
        self.log("log retention sweep completed: " + ", ".join(f"{k} {v}" for k, v in
                                                               counts.items()))
        for problem in logs.errors:
            self.log(f"error: log retention: {problem}")

    # ------------------------------------------------------------------ runs
    def dispatch(self, entry: Entry, window: datetime | None, attempt: int,
                 now: datetime, *, start_at: datetime | None = None,
                 catch_up: Decision | None = None) -> None:
        """Hand the attempt to a worker; with `start_at`, the worker prepares the run at once
        and spawns the agent at that instant. `catch_up`: the decision behind the attempt,
        whose passed-over windows are recorded once the attempt counts (see _account)."""
        assert window is not None
        stop = StopRequest()
        run = _Running(entry, window, max(now, start_at or now), stop, catch_up=catch_up)
        with self._lock:
            self.running[entry.agent] = run
        if self._busy is not None:
            self._busy.set()
        request = RunRequest(loaded=entry.loaded, schedule=entry.schedule, source="daemon",
                             window=entry.window(window), policy=entry.policy,
                             stdin_devnull=True, stop=stop,
                             not_before=None if start_at is None else start_at.timestamp())
        deps = RunDeps(home=self.home, audit=self.audit, env=self.env, history=self.history,
                       windows=self.windows, say=lambda text: self.log(text.strip()),
                       clock=lambda: self.clock.now().timestamp(),
                       on_spawn=self._spawned, on_exit=self._exited,
                       grace=float(self.config.daemon.shutdown_grace_seconds),
                       log_limits=(self.config.logging.agent_log_max_bytes,
                                   self.config.logging.agent_log_keep),
                       secrets=self.secrets, notifiers=self._notifiers(entry),
                       enforcement=self.config.security.enforcement)
        deps.hooks = PluginHooks(self.home, self.audit, self.env, say=deps.say,
                                 on_spawn=self._spawned, on_exit=self._exited,
                                 grace=deps.grace)
        self.log(f"dispatching {entry.agent}/{entry.schedule.id} attempt {attempt}/"
                 f"{entry.policy.max_attempts} (window {window.isoformat()})")
        loop = asyncio.get_running_loop()

        def work() -> RunReport:
            try:
                report = execute(request, deps)
            finally:
                run.ended = self.clock.now()
            try:
                self.alerts.run_finished(entry, report, self.clock.now(), history=self.history)
            except Exception as exc:  # never the run's outcome
                self.log(f"error: alerts after {entry.agent}/{entry.schedule.id}: {exc}")
            return report

        future = self.executor.submit(work)
        run.future = future
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._finished, run, f))

    def _notifiers(self, entry: Entry) -> tuple[Any, ...]:
        declared = entry.loaded.manifest.notifiers
        security = entry.loaded.manifest.security
        allowed = security.allowed_plugins if security is not None else []
        return (LadderOwnsGivenUp(self.outbox.for_run(declared, allowed_plugins=allowed)),) \
            if declared else ()

    def _spawned(self, request: RunRequest, pid: int, argv: list[str], executable: str,
                 kind: str = "agent", deadline: float | None = None) -> None:
        """A process of a run began: the agent, or one of its hook plugins (`kind` the
        plugin's call site: preflight, sink, notify)."""
        with self._lock:
            self._proc_ids += 1
            run = self.running.get(request.agent)
            plugin = kind != "agent"
            label = (f"{request.agent}.{request.schedule.id}" if not plugin else
                     f"{request.agent}.{request.schedule.id}:{Path(executable).name}")
            info = ProcessInfo(
                id=self._proc_ids, pid=pid, kind=kind,
                owner=ProcessOwner(agent=request.agent, schedule=request.schedule.id),
                label=label, started_at=self.clock.now(),
                deadline_seconds=int(deadline) if deadline is not None else
                request.loaded.manifest.agent.timeout_seconds, pgid=pid,
                command=_shown_command(executable, argv))
            if run is not None:
                run.processes[pid] = info
        self._write_snapshot()

    def spawned(self, message: Any, pid: int, argv: list[str], executable: str,
                deadline: float) -> None:
        """The outbox started a `plugin` notifier's process (PluginProcesses)."""
        with self._lock:
            self._proc_ids += 1
            self._notify_procs[pid] = ProcessInfo(
                id=self._proc_ids, pid=pid, kind="notify",
                owner=ProcessOwner(agent=message.agent, schedule=message.schedule),
                label=f"{message.agent}.{message.schedule}:{Path(executable).name}",
                started_at=self.clock.now(), deadline_seconds=max(1, int(deadline)),
                pgid=pid, command=_shown_command(executable, argv))
        self._write_snapshot()

    def exited(self, pid: int) -> None:
        with self._lock:
            self._notify_procs.pop(pid, None)
        self._write_snapshot()

    def _exited(self, request: RunRequest, pid: int) -> None:
        with self._lock:
            run = self.running.get(request.agent)
            if run is not None:
                run.processes.pop(pid, None)
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        """Write supervisor.json as the live registry says now (deleted when nothing runs).
        Called from the worker threads (a spawn, an exit) and from the loop (every
        SNAPSHOT_SECONDS): one writer at a time, so an older list never lands last."""
        with self._snapshot_lock:
            with self._lock:
                now = self.clock.now()
                entries = [p.aged(now) for r in self.running.values()
                           for p in r.processes.values()]
                entries += [p.aged(now) for p in self._notify_procs.values()]
            try:
                if entries:
                    self.snapshot.write(entries)
                else:
                    self.snapshot.delete()
            except (OSError, DotagentError) as exc:
                self.log(f"error: {exc}")

    async def _snapshots(self) -> None:
        """While anything runs, rewrite supervisor.json every SNAPSHOT_SECONDS (its ages
        and deadline percentages stay current); while idle, sleep without a timer."""
        busy = self._busy
        assert busy is not None
        while True:
            await busy.wait()
            while self.running:
                await asyncio.sleep(SNAPSHOT_SECONDS)
                if self.running:
                    self._write_snapshot()
            busy.clear()

    def _finished(self, run: _Running, future: Future[RunReport]) -> None:
        try:
            self._account(run, future)
        finally:
            self.timer.poke()  # whatever happened, the loop looks again

    def _account(self, run: _Running, future: Future[RunReport]) -> None:
        agent = run.entry.agent
        with self._lock:
            self.running.pop(agent, None)
        run.stop.close()  # its pipe; here, in the loop, where `stop()` could still use it
        known: WindowState | None = None  # the run's window as the run left it
        try:
            report = future.result()
            known = report.window
            if known is not None and run.catch_up is not None:
                # The windows this run passed over, recorded now that the attempt counts (its
                # window moved past them): a run that could not begin is tried again, and
                # recording them at each try would count them again and again.
                record_skipped(run.entry, run.catch_up, record=self.record)
            if known is not None:
                if report.window_saved:
                    self._unsaved.pop(run.entry.key, None)
                else:  # kept here while the disk refuses it (see _overlay)
                    self._unsaved[run.entry.key] = known
            o = report.outcome
            state = "aborted by preflight" if o is None else (
                "ok" if o.ok else f"exit {o.exit_code}{' (timed out)' if o.timed_out else ''}")
            self.log(f"finished {agent}/{run.entry.schedule.id}: {state}")
        except AgentBusy as exc:
            self.log(f"skipped {agent}/{run.entry.schedule.id}: {exc.message}")
            self._hold(run.entry.key, run.window, self.clock.now())
        except Exception as exc:  # a run that could not begin (log/heartbeat unwritable)
            self.log(f"error: {agent}/{run.entry.schedule.id} could not run: {exc}; trying "
                     f"this window again in {int(HOLD_OFF.total_seconds())} s")
            self._hold(run.entry.key, run.window, self.clock.now())
        now = self.clock.now()
        for i, entry in enumerate(self.entries):
            if entry.agent == agent:
                mine = entry.key == run.entry.key
                self.entries[i] = self._refresh(entry, window=known if mine else None)
        if not self._stopping:
            # Overlap is judged at the run's end, not now: windows that came due after it
            # ended (the loop was busy, the daemon frozen) are ordinary due windows.
            self._skip_overlaps(agent, run.started, run.ended or now)

    def _skip_overlaps(self, agent: str, started: datetime, ended: datetime) -> None:
        """Windows of `agent` that came due while it ran are skipped, never queued: one
        `run_skipped_overlap` per episode, with the count (V7).

        They are judged as if the run had not succeeded: a success that ended after a window
        covers it (S2.5: the heartbeat's last success is newer than the window), so it must
        not run now, but it still came due while the agent was busy, and that is audited.
        Only a window the success does not cover (the run failed, or it belongs to another
        schedule of the agent) is written as missed, so that it is not run afterwards."""
        for i, entry in enumerate(self.entries):
            if entry.agent != agent:
                continue
            probe = replace(entry, state=replace(entry.state, last_success=None))
            decision = probe.decide(ended)
            if decision.action not in ("run", "missed") or decision.window is None or \
                    decision.window <= started:
                continue
            latest = decision.window
            count = _windows_in(entry, started, latest)
            success = entry.state.last_success
            skipped: WindowState | None = None
            if success is None or success < latest:
                paused = entry.key in self._paused
                skipped = WindowState(expected_at=latest, missed=not paused,
                                      settled="paused" if paused else None)
                try:
                    self.windows.save(agent, entry.schedule.slug, entry.schedule.id, skipped)
                except DotagentError as exc:
                    self.log(f"error: {exc.message}")
                    self._unsaved[entry.key] = skipped
                else:
                    self._unsaved.pop(entry.key, None)
            self.record(events.RunSkippedOverlap(
                agent=agent, schedule=entry.schedule.id,
                reason=f"{count} window(s) came due while the agent was still running "
                       f"(latest {latest.isoformat()}); skipped, not queued"))
            self.log(f"skipped {count} window(s) of {agent}/{entry.schedule.id}: the agent "
                     "was still running")
            self.entries[i] = self._refresh(entry, window=skipped)

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
            try:
                self.windows.save(row.agent, row.slug, row.schedule, state,
                                  stderr="interrupted: the daemon stopped during this attempt")
            except DotagentError as exc:
                self.log(f"error: {exc.message}")
                self._unsaved[(row.agent, row.schedule)] = state

    def stop(self, reason: str) -> None:
        if self._stopping is None:
            self._stopping = reason
            self.log(f"daemon stopping ({reason})")
            for run in list(self.running.values()):
                run.stop.request(signal.SIGTERM)
        else:  # asked twice: no more grace
            for run in list(self.running.values()):
                run.stop.request(signal.SIGTERM)
        timer = getattr(self, "timer", None)  # None: asked before serve() began
        if timer is not None:
            timer.poke()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = WallTimer(loop)
        loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        loop.add_signal_handler(signal.SIGUSR1, self._sigusr1)
        self._watching = asyncio.Event()
        self._start_watcher()
        self._busy = asyncio.Event()
        snapshots = asyncio.ensure_future(self._snapshots())
        try:
            # The first scan comes after the watches exist: a manifest written between the
            # two would otherwise go unseen until the rescan backstop.
            await self._watching.wait()
            while not self._stopping:
                now = self.clock.now()
                try:
                    self.retention(now)
                    wake: datetime | None = self.step(now)
                except Exception as exc:  # a bug must not take every schedule down with it
                    self.log(f"error: internal error in the scheduling step, trying again in "
                             f"{int(HOLD_OFF.total_seconds())} s: "
                             f"{''.join(traceback.format_exception(exc)).rstrip()}")
                    wake = now + HOLD_OFF
                if self._stopping:
                    break
                self._check_watches()
                await self.timer.wait(wake)
            while self.running:  # each run records itself as interrupted
                await self.timer.wait(None)
        finally:
            self._secrets_cancel.set()
            snapshots.cancel()
            with contextlib.suppress(BaseException):
                await snapshots
            await self._stop_watcher()
            self.timer.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            self.executor.shutdown(wait=True)
            if self._secrets_pool is not None:  # a reload still waiting on `op` is called off
                self._secrets_pool.shutdown(wait=True, cancel_futures=True)
            self._notice_pool.shutdown(wait=True)
            self.outbox.close(wait=True, timeout=NOTIFY_DRAIN_SECONDS)
            self._stop_notify_plugins()
            with contextlib.suppress(OSError, DotagentError):
                self.snapshot.delete()
            self.history.close()

    def _stop_notify_plugins(self) -> None:
        """A `plugin` notifier still running after the outbox's drain is stopped with the
        daemon (its group: TERM, the shutdown grace, KILL) rather than left behind."""
        with self._lock:
            pids = list(self._notify_procs)
        if not pids:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.killpg(pid, sig)
            deadline = time.monotonic() + float(self.config.daemon.shutdown_grace_seconds)
            while time.monotonic() < deadline:
                with self._lock:
                    pids = list(self._notify_procs)
                if not pids:
                    return
                time.sleep(0.05)

    def _sighup(self) -> None:
        self.log("SIGHUP: re-reading config.toml and the manifests")
        self.reload_config()
        self._reload_due = True
        self.timer.poke()
        # The secrets are read off the loop: a secret reference's command (`op read …`) may
        # take up to its timeout, and schedules keep firing meanwhile (with the store they
        # had). `config_reloaded` is recorded once the whole reload is done. SIGHUPs that
        # come while a reload is under way are answered by one more reload after it.
        if self._secrets_future is not None and not self._secrets_future.done():
            self._secrets_again = True
            return
        self._reload_secrets()

    def _reload_secrets(self) -> None:
        if self._secrets_pool is None:
            self._secrets_pool = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="secrets")
        loop = asyncio.get_running_loop()

        def done(f: Future[None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon stopped
                loop.call_soon_threadsafe(self._reloaded, f)

        self._secrets_again = False
        self._secrets_future = self._secrets_pool.submit(self.load_secrets)
        self._secrets_future.add_done_callback(done)

    def _reloaded(self, future: Future[None]) -> None:
        if future.cancelled() or self._secrets_cancel.is_set():
            return  # the daemon is stopping: nothing was loaded
        exc = future.exception()
        if isinstance(exc, LoadCancelled):
            return
        if exc is not None:
            self.log(f"error: reloading the secrets failed: {type(exc).__name__}: {exc}")
        self.record(events.ConfigReloaded(reason="SIGHUP"))
        if self._secrets_again:
            self._reload_secrets()

    def _sigusr1(self) -> None:
        """Sent by `pause`, `resume` and `bootstrap`: the pauses or the window files changed.
        The next step re-reads paused.json and rescans (window files included); nothing is
        audited — the command that sent it recorded what it did."""
        self.log("SIGUSR1: re-reading the pauses and the window files")
        self._rescan_due = True
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
        self.alerts.config = result.config

    def load_secrets(self) -> None:
        """(Re)load the secrets store (S6): a refused or vanished file drops the old store,
        audited as `secrets_refused`; runs already dispatched keep what they were given."""
        self.secrets = load_secrets(self.home, self.config, self.env, audit=self.audit,
                                    say=lambda text: self.log(text.strip()),
                                    previous=self.secrets, cancel=self._secrets_cancel)
        if self.secrets.path is not None:
            self.log(f"secrets: {len(self.secrets)} loaded from {self.secrets.path}"
                     + (f", {self.secrets.unresolved} unresolved" if self.secrets.unresolved
                        else ""))

    # ------------------------------------------------------------------ watching
    def _start_watcher(self) -> None:
        self._watched: frozenset[str] | None = None
        self._watcher: asyncio.Future[None] | None = asyncio.ensure_future(self._watch())

    async def _stop_watcher(self) -> None:
        watcher, self._watcher = getattr(self, "_watcher", None), None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher

    def _check_watches(self) -> None:
        """After a scan: when directories came or went without an inotify event telling
        (a SIGHUP or backstop rescan; an agent directory that is a symlink or a mount
        point), watch the new set."""
        watcher = getattr(self, "_watcher", None)
        if watcher is None or watcher.done() or self._watched is None or \
                self._last_scan == self._watch_checked:
            return
        self._watch_checked = self._last_scan
        if frozenset(str(d) for d in self.watch_dirs()) != self._watched:
            watcher.cancel()
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """inotify on the roots and agent directories; a burst of events (an editor's save)
        becomes one rescan DEBOUNCE_SECONDS after the last of them.

        Every time the watches are (re)installed, a rescan follows, so nothing written
        while no watch was in place goes unseen. Without inotify (not Linux, or no inotify
        instance to be had) the rescan backstop is the only watcher."""
        try:
            from asyncinotify import Inotify, Mask
        except ImportError:
            self._watching.set()
            return
        mask = (Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO |
                Mask.CLOSE_WRITE | Mask.ATTRIB | Mask.DELETE_SELF | Mask.MOVE_SELF)
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                with Inotify() as inotify:
                    kinds: dict[str, str] = {}
                    for d, kind in self.watch_dirs().items():
                        with contextlib.suppress(OSError):
                            inotify.add_watch(d, mask)
                            kinds[str(d)] = kind
                    self._watched = frozenset(kinds)
                    if self._watching.is_set():  # not the first time: look again now
                        self._rescan_due = True
                        loop.call_soon(self.timer.poke)
                    self._watching.set()

                    def wanted(event: Any, kinds: dict[str, str] = kinds) -> bool:
                        watched = str(event.watch.path) if event.watch is not None else ""
                        name = event.name.name if event.name is not None else None
                        return self.relevant(kinds.get(watched, "dirs"), name)

                    while not wanted(await inotify.get()):  # the first event of a burst
                        pass
                    # The burst ends DEBOUNCE_SECONDS after its last relevant event; the
                    # others (an agent writing beside its manifest) must not prolong it.
                    quiet_at = loop.time() + DEBOUNCE_SECONDS
                    while (left := quiet_at - loop.time()) > 0:
                        try:
                            event = await asyncio.wait_for(inotify.get(), left)
                        except TimeoutError:
                            break
                        if wanted(event):
                            quiet_at = loop.time() + DEBOUNCE_SECONDS
        except OSError as exc:  # no inotify instance (fs.inotify.max_user_instances)
            self.log(f"warning: cannot watch the agent directories ({exc}); changes are "
                     f"seen at the next rescan (every {self.config.daemon.rescan_minutes} "
                     "minutes) or on SIGHUP")
        finally:
            self._watched = None
            self._watching.set()


_COUNT_LIMIT = 100_000
_INSTANT = timedelta(microseconds=1)


def _never_ran(entry: Entry) -> bool:
    state = entry.state
    return state.window is None and state.last_start is None and state.last_success is None


def _settled(entry: Entry, decision: Decision) -> WindowState:
    """The window state `apply_settlement` writes for a `missed` or `give_up` decision."""
    assert decision.window is not None
    if decision.action == "missed":
        return WindowState(expected_at=decision.window, missed=True)
    return replace(entry.window(decision.window), given_up=True)


def _next_window(entry: Entry, after: datetime) -> datetime | None:
    """The first window of `entry` strictly after `after`."""
    rule = entry.rule
    if isinstance(rule, IntervalRule):
        anchor = entry.state.interval_anchor
        if anchor is None or after < anchor:
            return anchor
        return anchor + ((after - anchor) // rule.every + 1) * rule.every
    return rule.next_after(after)


def _windows_in(entry: Entry, after: datetime, upto: datetime) -> int:
    """How many windows of `entry` fall in (after, upto]; at least 1 (`upto` is one)."""
    rule = entry.rule
    if isinstance(rule, IntervalRule):
        anchor = entry.state.interval_anchor
        if anchor is None:
            return 1
        passed = max(0, (after - anchor) // rule.every)
        return max(1, (upto - anchor) // rule.every - passed)
    count, t = 0, rule.next_after(after)
    while t is not None and t <= upto and count < _COUNT_LIMIT:
        count += 1
        t = rule.next_after(t)
    return max(1, count)


def logger_log(name: str = "dotagent.daemon") -> Callable[[str], None]:
    """The daemon's `log(text)` on top of its JSON log (`daemonlog.configure`): a leading
    `error:` / `warning:` chooses the level."""
    import logging

    logger = logging.getLogger(name)

    def log(text: str) -> None:
        if text.startswith("error:"):
            logger.error(text[6:].strip())
        elif text.startswith("warning:"):
            logger.warning(text[8:].strip())
        else:
            logger.info(text)

    return log

