"""Windows settled without a run: the ones that come due while a schedule is paused
(`dotagent pause`), and the ones `dotagent bootstrap` marks handled. Shared by the daemon,
`tick`, `resume` and `bootstrap`, so that they all settle the same windows the same way.

A settled window (`WindowState.settled`) is never run, never retried and not counted as
missed; the scheduler's next decision is the next window, so lifting a pause fires no burst
of the windows it covered, and health judges nothing late until that next window is
(docs/decisions.md, "Paused windows are settled, not missed").
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from dotagent.daemon.tick import Entry
from dotagent.paths import Home
from dotagent.schedule.windows import Decision, IntervalRule, WindowState
from dotagent.state.pause import Pause, Pauses
from dotagent.state.windows import WindowStore

__all__ = [
    "PauseView",
    "Settlement",
    "active_pause",
    "bootstrap_plan",
    "covering_pause",
    "hold_wakes",
    "pause_verdict",
    "settle",
]

Verdict = Literal["settle", "hold"]


class PauseView:
    """`state/paused.json` as a long-lived reader sees it: the file is read again only when
    its inode, mtime or size changed, so the daemon can look at every dispatch decision for
    the price of one `stat`."""

    def __init__(self, home: Home) -> None:
        self.store = Pauses(home)
        self._signature: tuple[int, int, int] | None = None
        self._table: dict[str, Pause] = {}
        self.generation = 0  # bumped whenever the table read differs from the last one

    def table(self) -> dict[str, Pause]:
        try:
            st = os.stat(self.store.path, follow_symlinks=False)
            signature: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            signature = None
        if signature != self._signature:
            self._signature = signature
            table = self.store.table() if signature is not None else {}
            if table != self._table:
                self.generation += 1
            self._table = table
        return self._table


def _keys(agent: str, schedule_id: str) -> tuple[str, str]:
    return agent, f"{agent}/{schedule_id}"


def active_pause(table: dict[str, Pause], agent: str, schedule_id: str,
                 now: float) -> Pause | None:
    """The pause covering (agent, schedule) at `now` (as `Pauses.active`, from a table read
    once): the one that lasts longer when both an agent-wide and a schedule pause hold."""
    found = [p for k in _keys(agent, schedule_id) if (p := table.get(k)) is not None
             and p.active(now)]
    if not found:
        return None
    return max(found, key=lambda p: float("inf") if p.until is None else p.until)


def covering_pause(table: dict[str, Pause], agent: str, schedule_id: str,
                   at: float) -> Pause | None:
    """A recorded pause (ended or not) whose span holds the instant `at`: a window that came
    due inside a pause is settled even when nobody looked before the pause ended."""
    for key in _keys(agent, schedule_id):
        p = table.get(key)
        if p is not None and p.since <= at and (p.until is None or at < p.until):
            return p
    return None


def pause_verdict(entry: Entry, decision: Decision, table: dict[str, Pause],
                  now: datetime) -> tuple[Verdict, Pause] | None:
    """What a pause makes of `decision`: "settle" for a new window (a run or a missed
    window, while paused or inside a recorded pause), "hold" for a retry or a give-up while
    paused (nothing happens until the pause ends; a newer window supersedes it); None when
    no pause concerns it."""
    if decision.window is None or decision.action not in ("run", "retry", "missed", "give_up"):
        return None
    live = active_pause(table, entry.agent, entry.schedule.id, now.timestamp())
    if decision.action in ("run", "missed"):
        pause = live or covering_pause(table, entry.agent, entry.schedule.id,
                                       decision.window.timestamp())
        return None if pause is None else ("settle", pause)
    return None if live is None else ("hold", live)


def settle(entry: Entry, at: datetime, why: str, windows: WindowStore) -> WindowState:
    """Write the window at `at` as settled (`why`: "paused" or "bootstrap"). Raises
    StateError when the window file cannot be written."""
    state = WindowState(expected_at=at, settled=why)
    windows.save(entry.agent, entry.schedule.slug, entry.schedule.id, state)
    return state


def hold_wakes(entry: Entry, pause: Pause, now: datetime) -> list[datetime]:
    """When to look again at a schedule whose retry a pause holds: the pause's end, and its
    next window (which will be settled, superseding the held one)."""
    from dotagent.clock import from_epoch

    wakes = [] if pause.until is None else [from_epoch(pause.until)]
    rule = entry.rule
    nxt: datetime | None
    if isinstance(rule, IntervalRule):
        anchor = entry.state.interval_anchor
        nxt = None if anchor is None else \
            anchor + ((now - anchor) // rule.every + 1) * rule.every
    else:
        delay = entry.policy.delay
        after = rule.next_after(now - delay)
        nxt = None if after is None else after + delay
    if nxt is not None:
        wakes.append(nxt)
    return wakes


@dataclass(frozen=True)
class Settlement:
    """One window `bootstrap` settles (or would, with --dry-run)."""

    entry: Entry
    window: datetime
    was: str  # "unrecorded", "missed" or "pending" (recorded, never attempted)


def bootstrap_plan(entries: Iterable[Entry], now: datetime) -> list[Settlement]:
    """For each schedule, its latest window due at `now` when nothing has handled it yet:
    unrecorded, recorded but never attempted, or recorded as missed. A window with an
    attempt (ran, retrying, given up) or already settled is left as it is, so a second
    bootstrap finds nothing to do."""
    out: list[Settlement] = []
    for entry in entries:
        decision = entry.decide(now)
        window = entry.state.window
        if decision.action in ("run", "missed") and decision.window is not None:
            if window is not None and window.expected_at == decision.window:
                if window.attempts > 0:
                    continue
                was = "missed" if window.missed else "pending"
            else:
                was = "unrecorded"
            out.append(Settlement(entry, decision.window, was))
        elif window is not None and window.missed and window.attempts == 0 and \
                window.settled is None and decision.window == window.expected_at:
            out.append(Settlement(entry, window.expected_at, "missed"))
    return out
