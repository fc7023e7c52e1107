"""One scheduling step, shared by `dotagent tick` and the daemon: load each monitored
schedule's state (heartbeat + latest window file), ask the pure scheduler what to do at `now`,
and record what needs no run (missed windows, give-ups). Running is the caller's job: `tick`
runs the due attempts one after the other, the daemon dispatches them under its caps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from dotagent.audit import events
from dotagent.discovery import Discovery
from dotagent.manifest import LoadedManifest, Schedule
from dotagent.paths import Home
from dotagent.schedule.rules import rule_for
from dotagent.schedule.windows import (
    Decision,
    Policy,
    Rule,
    ScheduleState,
    WindowState,
    decide,
    next_due,
)
from dotagent.state.heartbeat import HeartbeatStore
from dotagent.state.windows import WindowStore, schedule_state
from dotagent.timefmt import iso

__all__ = ["Entry", "apply_settlement", "load_entries", "plan", "record_skipped", "refresh"]


@dataclass(frozen=True)
class Entry:
    """One schedule of one monitored agent, with the state the scheduler decides from."""

    loaded: LoadedManifest
    schedule: Schedule
    rule: Rule
    policy: Policy
    state: ScheduleState

    @property
    def agent(self) -> str:
        return self.loaded.manifest.agent.name

    @property
    def key(self) -> tuple[str, str]:
        return (self.agent, self.schedule.id)

    def decide(self, now: datetime) -> Decision:
        return decide(self.rule, self.state, self.policy, now)

    def next_due(self, now: datetime) -> datetime | None:
        return next_due(self.rule, self.state, self.policy, now)

    def window(self, expected_at: datetime) -> WindowState:
        """The recorded state of the window at `expected_at`, or a fresh one."""
        w = self.state.window
        if w is not None and w.expected_at == expected_at:
            return w
        return WindowState(expected_at=expected_at)


def load_entries(found: Discovery, home: Home, zone: tzinfo, *,
                 windows: WindowStore | None = None) -> list[Entry]:
    """Every schedule of every monitored agent, in discovery then manifest order."""
    from dotagent.machineid import jitter_salt

    windows = windows or WindowStore(home)
    heartbeats = HeartbeatStore(home)
    salt = jitter_salt(home)
    keys = [(loaded.name, s.slug) for loaded in found.agents.values()
            if loaded.manifest.agent.monitor for s in loaded.manifest.schedules]
    latest = windows.latest_many(keys)
    out: list[Entry] = []
    for loaded in found.agents.values():
        manifest = loaded.manifest
        if not manifest.agent.monitor:
            continue
        for sched in manifest.schedules:
            state = schedule_state(heartbeats, latest.get((loaded.name, sched.slug)),
                                   loaded.name, sched.slug)
            out.append(Entry(loaded, sched, rule_for(sched, zone),  # type: ignore[arg-type]
                             manifest.policy(sched, salt=salt), state))
    return out


def refresh(entry: Entry, home: Home, windows: WindowStore, *,
            window: WindowState | None = None) -> Entry:
    """The same entry with its state re-read (after a run changed it). `window`: the latest
    window as the caller has just written it — then the windows directory, which holds
    every agent's files (one or two a minute for a schedule firing every few seconds, kept
    for window_retention_days), is not scanned again to find it."""
    heartbeats = HeartbeatStore(home)
    if window is not None:
        return replace(entry, state=schedule_state(heartbeats, None, entry.agent,
                                                   entry.schedule.slug, window=window))
    record = windows.latest(entry.agent, entry.schedule.slug)
    return replace(entry, state=schedule_state(heartbeats, record, entry.agent,
                                               entry.schedule.slug))


def plan(entries: Iterable[Entry], now: datetime) -> list[tuple[Entry, Decision]]:
    return [(e, e.decide(now)) for e in entries]


def apply_settlement(entry: Entry, decision: Decision, *, windows: WindowStore,
                     record: Callable[[events.Event], object], now: datetime,
                     reason: str | None = None) -> WindowState | None:
    """Record a decision that needs no run: `missed` (too old when first seen: S14.20, or
    skipped because the agent was still running) and `give_up`. Returns the window written,
    or None when the decision needs a run or nothing at all."""
    if decision.window is None:
        return None
    sched = entry.schedule
    if decision.action == "missed":
        state = WindowState(expected_at=decision.window, missed=True)
        why = reason or (f"older than stale_after_minutes ({entry.policy.stale_after_minutes}) "
                         "when first seen")
        if decision.skipped:
            why += f"; {decision.skipped} earlier window(s) skipped"
        record(events.WindowMissed(agent=entry.agent, schedule=sched.id,
                                   expected_at_iso=iso(decision.window), reason=why))
        windows.save(entry.agent, sched.slug, sched.id, state)
        return state
    if decision.action == "give_up":
        current = entry.window(decision.window)
        state = replace(current, given_up=True)
        # Retries used up, or (after a manifest change) a status now in no_retry_exit_codes.
        no_retry = not entry.policy.exits.retry_allowed(current.last_exit_code)
        record(events.AgentGivenUp(agent=entry.agent, schedule=sched.id,
                                   attempts=current.attempts,
                                   last_exit=current.last_exit_code
                                   if current.last_exit_code is not None else -1,
                                   reason=events.no_retry_reason(current.last_exit_code)
                                   if no_retry else ""))
        windows.save(entry.agent, sched.slug, sched.id, state, given_up_at=now)
        return state
    return None


def record_skipped(entry: Entry, decision: Decision, *,
                   record: Callable[[events.Event], object]) -> bool:
    """Before a catch-up run: the windows it passes over (the daemon was down, frozen or
    at its cap while they came due) are recorded as one `window_missed` with their count,
    never run in a burst and never dropped without a trace (SPEC S14.1). Returns whether
    anything was recorded."""
    if decision.action != "run" or not decision.skipped or decision.window is None:
        return False
    first = decision.first_skipped or decision.window
    record(events.WindowMissed(
        agent=entry.agent, schedule=entry.schedule.id, expected_at_iso=iso(first),
        reason=f"{decision.skipped} window(s) passed before they could run, the first at "
               f"{iso(first)}; only the latest ({iso(decision.window)}) runs"))
    return True
