"""`Alerts`: the one place that decides whether a notice goes out, and to whom.

Used by the daemon (the health sweep after each step, the end of every run, daemon-wide
events, the daily summary, the end of quiet hours) and by `dotagent daily-summary`. Every
notice passes `deliver`: the `events` filters, then snoozes and pauses, then quiet hours
(non-critical notices are held for the digest), then the `Sender`. Sending is handed to
`submit` (the daemon's delivery thread) so that it never delays a dispatch.

Who owns the first `given_up` notice: the ladder. In the daemon the lifecycle's own
`given_up` event still reaches the hooks (`[[on_failure]]`), and the daemon sends the notice
through `Alerts.run_finished` as the first rung of the episode; the sweep then only reminds
(docs/decisions.md, "given_up is announced by the ladder").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from dotagent.alerts import anomaly
from dotagent.alerts.ladder import Ladder, episode_key, given_up_text, stale_text
from dotagent.alerts.quiet import HeldQueue, QuietHours, digests
from dotagent.alerts.seam import Message, Sender, agent_entries, listens
from dotagent.alerts.snooze import Snoozes
from dotagent.alerts.summary import (
    SummaryGuard,
    SummaryLine,
    next_opening,
    summary_body,
    window_at,
)
from dotagent.audit import events
from dotagent.clock import from_epoch
from dotagent.config import Config
from dotagent.errors import DotagentError
from dotagent.paths import Home
from dotagent.schedule.windows import health
from dotagent.state.pause import Pauses

__all__ = ["DAEMON_WIDE", "Alerts", "daemon_wide_text", "route"]

# Critical events that belong to no single agent: they go to config.toml's [[notifiers]].
DAEMON_WIDE: frozenset[str] = frozenset({
    "phantom_agent_detected", "manifest_drift_detected", "manifest_invalid",
    "manifest_cache_missing", "audit_chain_broken", "secrets_refused", "selfcheck_failed",
    "orphan_reaped", "plugin_drift_detected", "manifest_signature_invalid",
})
SWEEP_RECHECK = 60.0  # an unchanged schedule is judged again at most once a minute


def route(event: str, listeners: Sequence[Any]) -> str | None:
    """The channel an alert goes out on (UPSTREAM-0.6 §7): `stale` when anybody listens for
    it, else `given_up`; None when nobody listens at all."""
    if any(listens(x, event) for x in listeners):
        return event
    if event == "stale" and any(listens(x, "given_up") for x in listeners):
        return "given_up"
    return None


def daemon_wide_text(event: events.Event) -> str:
    f = event.fields()
    kind = f.pop("event_type")
    agent = f.get("agent")
    what = {
        "phantom_agent_detected": f"phantom agent {agent!r} appeared at {f.get('path')}",
        "manifest_drift_detected": f"the manifest of {agent!r} changed since it was last "
                                   f"seen ({f.get('path')})",
        "manifest_invalid": f"manifest {f.get('path')} is invalid: {f.get('error')}",
        "manifest_cache_missing": f"the manifest cache is missing: {f.get('reason')}",
        "audit_chain_broken": f"the audit log's hash chain is broken ({f.get('kind')}, line "
                              f"{f.get('line')})",
        "secrets_refused": f"the secrets file {f.get('path')} was refused: {f.get('reason')}",
        "selfcheck_failed": f"the installed dotagent differs from the recorded one "
                            f"({f.get('path')})",
        "orphan_reaped": f"an orphaned process group was killed: {f.get('label')} (pid "
                         f"{f.get('pid')})",
        "plugin_drift_detected": f"plugin {f.get('plugin')!r} changed ({f.get('path')})",
        "manifest_signature_invalid": f"agent {agent!r} is not run: {f.get('reason')} "
                                      f"({f.get('path')})",
    }.get(kind, kind)
    return f"🛡️ dotagent: {what} [{kind}]"


class Alerts:
    def __init__(self, home: Home, config: Config, sender: Sender, *, zone: tzinfo,
                 log: Callable[[str], None] = lambda text: None,
                 record: Callable[[events.Event], None] | None = None,
                 submit: Callable[[Callable[[], None]], None] | None = None,
                 hooks: Callable[[Any, Message], None] | None = None) -> None:
        """`hooks(entry, message)`: hand an alert to the agent's `[[on_failure]]` hooks that
        listen for it (the daemon runs them through the plugin client); None: no hooks."""
        self.home = home
        self.hooks = hooks
        self.config = config
        self.sender = sender
        self.zone = zone
        self.log = log
        self.record = record
        self.submit = submit or (lambda work: work())
        self.held = HeldQueue(home)
        self.snoozes = Snoozes(home)
        self.pauses = Pauses(home)
        self.guard = SummaryGuard(home)
        self._ladder: Ladder | None = None
        self._lock = threading.RLock()
        self._checked: dict[tuple[str, str], tuple[Any, float]] = {}
        self._held_pending: bool | None = None
        self._sent_day: date | None = None

    # ------------------------------------------------------------------ configuration
    @property
    def quiet(self) -> QuietHours | None:
        q = self.config.quiet_hours
        if not q.enabled:
            return None
        assert q.start is not None and q.end is not None
        zone: tzinfo = self.zone
        if q.timezone:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(q.timezone)
        return QuietHours(q.start, q.end, zone)

    @property
    def ladder(self) -> Ladder:
        if self._ladder is None:
            self._ladder = Ladder.load(self.home)
        return self._ladder

    def _save_ladder(self) -> None:
        try:
            self.ladder.save()
        except (OSError, DotagentError) as exc:
            self.log(f"error: cannot write {self.home.state_dir / 'notify' / 'alerts.json'}: "
                     f"{exc}")

    # ------------------------------------------------------------------ delivery
    def deliver(self, message: Message, entries: Sequence[Any], now: datetime, *,
                quiet: bool = True, snooze: bool = True) -> str:
        """'sent', 'held' (quiet hours), 'snoozed', 'paused' (the schedule is paused: it raises
        no alert) or 'nobody' (no entry listens)."""
        with self._lock:
            return self._deliver(message, entries, now, quiet=quiet, snooze=snooze)

    def _deliver(self, message: Message, entries: Sequence[Any], now: datetime, *,
                 quiet: bool, snooze: bool) -> str:
        chosen = [e for e in entries if listens(e, message.event)]
        if not chosen:
            return "nobody"
        ts = now.timestamp()
        if snooze and message.agent and \
                self.snoozes.until(message.agent, message.schedule or None, ts) is not None:
            return "snoozed"
        if snooze and message.agent and \
                self.pauses.active(message.agent, message.schedule or None, ts) is not None:
            return "paused"
        hours = self.quiet if quiet else None
        if hours is not None and not message.critical and hours.active(now):
            try:
                self.held.add(message, chosen, ts)
                self._held_pending = True
                return "held"
            except (OSError, DotagentError) as exc:
                self.log(f"error: cannot hold a notice for quiet hours ({exc}); sending it")
        self._send(message, chosen)
        return "sent"

    def _send(self, message: Message, entries: Sequence[Any]) -> None:
        def work() -> None:
            try:
                self.sender.send(message, entries)
            except Exception as exc:  # a sender must not raise; if it does, say so
                self.log(f"error: delivering {message.event} for {message.agent or 'dotagent'} "
                         f"failed: {type(exc).__name__}: {exc}")

        self.submit(work)

    def flush_held(self, now: datetime) -> int:
        """Outside quiet hours, deliver what was held as one digest per notifier."""
        hours = self.quiet
        if hours is not None and hours.active(now):
            return 0
        if self._held_pending is False:
            return 0
        try:
            held, dropped = self.held.load()
        except (OSError, DotagentError) as exc:
            self.log(f"error: cannot read the held notices: {exc}")
            self._held_pending = False  # tried again at the next end of quiet hours
            return 0
        self._held_pending = False
        if held or dropped:
            try:
                self.held.clear()
            except (OSError, DotagentError) as exc:
                # Deliver them now all the same: a digest a day late is worse than one that
                # a restart (finding the file still full) may deliver a second time.
                self.log(f"error: cannot empty the held notices ({exc}); delivering them "
                         "now; a restart may deliver them again")
        for message, entries in digests(held, dropped):
            self._send(message, entries)
        return len(held)

    # ------------------------------------------------------------------ health sweep
    def sweep(self, entries: Iterable[Any], now: datetime,
              skip: Iterable[tuple[str, str]] = ()) -> None:
        """Judge each monitored schedule's health (UPSTREAM-0.6 §7). An entry whose state is
        the one judged last time is looked at again only after SWEEP_RECHECK or when its
        ladder reminder is due, so an idle daemon's wake costs a dictionary lookup each."""
        ts = now.timestamp()
        skipped = set(skip)
        entries = list(entries)
        with self._lock:
            for entry in entries:
                key = entry.key
                if key in skipped:
                    continue
                seen = self._checked.get(key)
                if seen is not None and seen[0] is entry.state and ts < seen[1]:
                    continue
                self._judge(entry, now)
                self._checked[key] = (entry.state, self._recheck_at(entry, ts))
            self._drop_orphan_episodes({(e.agent, e.schedule.id) for e in entries}, ts)

    def _drop_orphan_episodes(self, known: set[tuple[str, str]], ts: float) -> None:
        """An episode whose reminder is due for a schedule the daemon no longer has (the
        agent was removed, or the schedule renamed) ends: nothing can remind or clear it,
        and its reminder time would wake the loop for nothing. A manifest that is only
        broken for a while loses its episode only if a reminder fell due meanwhile."""
        gone = [key for key, ep in self.ladder.episodes.items()
                if ep.next_at() <= ts and _episode_owner(key) not in known]
        for key in gone:
            del self.ladder.episodes[key]
        if gone:
            self._save_ladder()

    def _recheck_at(self, entry: Any, ts: float) -> float:
        """SWEEP_RECHECK from now, or the entry's next ladder reminder if that is sooner."""
        at = ts + SWEEP_RECHECK
        for event in ("stale", "given_up"):
            ep = self.ladder.episodes.get(episode_key(entry.agent, entry.schedule.id, event))
            if ep is not None and ts < ep.next_at() < at:
                at = ep.next_at()
        return at

    def _judge(self, entry: Any, now: datetime) -> None:
        state, policy = entry.state, entry.policy
        h = health(entry.rule, state, policy, now)
        agent, sid = entry.agent, entry.schedule.id
        window = state.window
        if h.state == "stale":
            if window is None and state.last_success is None:
                return  # never ran and no window yet: quiet
            self._alert(entry, "stale", now)
        elif h.state == "failing":
            if window is not None and window.attempts > 0 and (
                    window.given_up or window.attempts >= policy.max_attempts
                    or not policy.exits.retry_allowed(window.last_exit_code)):
                self._alert(entry, "given_up", now)
        else:
            healthy = (window is not None and state.succeeded(window, policy.exits)) or \
                (window is None and state.last_success is not None)
            if healthy and self.ladder.clear(agent, sid):
                self._save_ladder()

    def _alert(self, entry: Any, event: str, now: datetime) -> str:
        """One rung of the ladder for (entry, event); 'quiet' when it may not speak yet."""
        agent, sid = entry.agent, entry.schedule.id
        manifest = entry.loaded.manifest
        channel = route(event, [*manifest.notifiers, *manifest.on_failure])
        if channel is None:
            return "nobody"
        key = episode_key(agent, sid, event)
        ts = now.timestamp()
        with self._lock:
            if not self.ladder.may_speak(key, ts):
                return "quiet"
            ep = self.ladder.episodes.get(key)
            count = 1 if ep is None else ep.count + 1
            window = entry.state.window
            stderr = self._stderr(entry)
            if event == "stale":
                body = stale_text(agent, sid, last_success=entry.state.last_success, now=now,
                                  count=count, stderr=stderr)
                critical = False
            else:
                since = 0.0 if ep is None else ts - ep.first_notified_at
                body = given_up_text(agent, sid, attempts=window.attempts if window else 0,
                                     exit_code=window.last_exit_code if window else None,
                                     count=count, since_seconds=since, stderr=stderr)
                critical = count == 1  # the first notice passes quiet hours; reminders wait
            message = Message(channel, agent, sid, body, critical=critical)
            status = self.deliver(message, agent_entries(manifest), now)
            # The hooks hear every stale notice and the given_up reminders (the first
            # given_up reached them from the run itself). Quiet hours hold no hook (a hook
            # is a program, not a person); a snooze silences them too.
            if status != "snoozed" and self._hooks_for(entry, message, ts,
                                                       call=event == "stale" or count > 1):
                status = "sent" if status == "nobody" else status
            if status in ("sent", "held"):
                self.ladder.record(key, ts)
                self._save_ladder()
            return status

    def _hooks_for(self, entry: Any, message: Message, ts: float, *, call: bool) -> bool:
        """Hand `message` to the agent's listening `[[on_failure]]` hooks, off the caller's
        thread (with `call` false: they have it already — the first given_up came from the
        run — and only count as listening); False when none listens (or it is snoozed, or
        there is no hook runner)."""
        hooks = self.hooks
        manifest = entry.loaded.manifest
        if hooks is None or not any(listens(r, message.event) for r in manifest.on_failure):
            return False
        if self.snoozes.until(message.agent, message.schedule or None, ts) is not None:
            return False
        if not call:
            return True

        def work() -> None:
            try:
                hooks(entry, message)
            except Exception as exc:  # a hook runner must not raise; if it does, say so
                self.log(f"error: on_failure hooks for {message.agent}/{message.schedule} "
                         f"({message.event}) failed: {type(exc).__name__}: {exc}")

        self.submit(work)
        return True

    def _stderr(self, entry: Any) -> str | None:
        window = entry.state.window
        if window is None:
            return None
        from dotagent.state.windows import WindowStore

        try:
            rec = WindowStore(self.home, zone=self.zone).read(entry.agent, entry.schedule.slug,
                                                               window.expected_at)
        except (OSError, DotagentError):
            return None
        return rec.last_attempt_stderr if rec is not None else None

    # ------------------------------------------------------------------ after a run
    def run_finished(self, entry: Any, report: Any, now: datetime,
                     history: Any | None = None) -> None:
        """After a daemon run: the first `given_up` notice, and the duration check."""
        if report.given_up and report.window is not None:
            from dataclasses import replace

            fresh = replace(entry, state=replace(entry.state, window=report.window))
            self._alert(fresh, "given_up", now)
        if report.ok and history is not None and report.history_id is not None:
            self.check_duration(entry, report.history_id, history, now)

    def check_duration(self, entry: Any, run_id: int, history: Any, now: datetime) -> None:
        try:
            run = history.get(run_id)
            rows = history.query(agent=entry.agent, schedule=entry.schedule.id,
                                 limit=anomaly.WINDOW * 3)
        except DotagentError as exc:
            self.log(f"error: duration check: {exc.message}")
            return
        if run is None:
            return
        found = anomaly.check_run(run, rows)
        if found is None:
            return
        agent, sid = entry.agent, entry.schedule.id
        if self.record is not None:
            self.record(events.DurationAnomaly(
                agent=agent, schedule=sid, duration_ms=int(found.duration * 1000),
                p50_ms=int(found.p50 * 1000), p95_ms=int(found.p95 * 1000),
                runs=found.runs, reason=found.reason()))
        self.deliver(Message("duration_anomaly", agent, sid, found.text(agent, sid)),
                     agent_entries(entry.loaded.manifest), now)

    # ------------------------------------------------------------------ daemon-wide
    def daemon_event(self, event: events.Event, now: datetime) -> str:
        if event.event_type not in DAEMON_WIDE:
            return "nobody"
        agent = getattr(event, "agent", None) or ""
        return self.daemon_notice(event.event_type, daemon_wide_text(event), now,
                                  agent=str(agent))

    def daemon_notice(self, kind: str, text: str, now: datetime, *, agent: str = "") -> str:
        """A critical notice that belongs to no agent, to config.toml's [[notifiers]]."""
        if not self.config.notifiers:
            return "nobody"
        message = Message(kind, agent, "", text, title="dotagent: security", critical=True)
        # Daemon-wide notices are about the machine, not an agent's runs: no snooze.
        return self.deliver(message, self.config.notifiers, now, snooze=False)

    # ------------------------------------------------------------------ daily summary
    def summary_entries(self) -> list[Any]:
        return list(self.config.daily_summary.notifiers) or [{"driver": "desktop"}]

    def summary_due(self, now: datetime) -> date | None:
        """The day whose summary should go out now, if one should."""
        ds = self.config.daily_summary
        if not ds.enabled:
            return None
        opened = window_at(now, ds.time, self.zone)
        if (now - opened).total_seconds() > ds.grace_minutes * 60:
            return None  # missed by more than the grace: skipped
        day = opened.astimezone(self.zone).date()
        if day == self._sent_day:
            return None
        if self.guard.sent_for() == day.isoformat():
            self._sent_day = day
            return None
        return day

    def send_summary(self, day: date, lines: Iterable[SummaryLine], now: datetime) -> str:
        body = summary_body(day, lines)
        message = Message("daily_summary", "", "", body, title="dotagent: daily summary")
        # The summary's notifiers ignore `events`, and its time is the user's choice:
        # neither quiet hours nor snoozes hold it.
        entries = [_no_events(e) for e in self.summary_entries()]
        self._sent_day = day
        try:
            self.guard.mark(day)
        except (OSError, DotagentError) as exc:
            self.log(f"error: cannot record the daily summary as sent: {exc}")
        return self.deliver(message, entries, now, quiet=False, snooze=False)

    # ------------------------------------------------------------------ wake-ups
    def next_wake(self, now: datetime) -> datetime | None:
        """The exact instants something here needs the loop: the summary's opening, the
        end of quiet hours while notices are held, the next ladder reminder."""
        with self._lock:  # a run's worker may be recording an episode meanwhile
            return self._next_wake(now)

    def _next_wake(self, now: datetime) -> datetime | None:
        wakes: list[datetime] = []
        ds = self.config.daily_summary
        if ds.enabled:
            if self.summary_due(now) is not None:
                wakes.append(now)
            wakes.append(next_opening(now, ds.time, self.zone))
        hours = self.quiet
        if hours is not None:
            if self._held_pending is None:
                self._held_pending = self.held.pending()
            if self._held_pending:
                wakes.append(now if not hours.active(now) else hours.ends_at(now))
        ts = now.timestamp()
        reminders = [ep.next_at() for ep in self.ladder.episodes.values()
                     if ep.next_at() > ts]
        if reminders:
            wakes.append(from_epoch(min(reminders)))
        return min(wakes) if wakes else None

    def forget(self, key: tuple[str, str]) -> None:
        """Judge `key` again at the next sweep (its ladder reminder is due)."""
        self._checked.pop(key, None)


def _episode_owner(key: str) -> tuple[str, str]:
    """`agent/schedule/event` → (agent, schedule); agent names hold no `/`."""
    agent, _, rest = key.partition("/")
    return agent, rest.rpartition("/")[0]


def _no_events(entry: Any) -> dict[str, Any]:
    from dotagent.alerts.seam import entry_table

    table = entry_table(entry)
    table.pop("events", None)
    return table
