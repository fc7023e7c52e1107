"""`dotagent pause NAME [--schedule ID] [--for DURATION]` / `dotagent resume NAME
[--schedule ID]`: stop dispatching an agent (or one schedule) for a while, and start again."""

from __future__ import annotations

import sys
from typing import Any

import click

from dotagent.cli._agents import complete_agent, complete_schedule

__all__ = ["pause_command", "resume_command"]


def _when(until: float | None, env: dict[str, str]) -> str:
    if until is None:
        return "until resumed"
    from dotagent.clock import from_epoch
    from dotagent.localzone import local_zone

    local = from_epoch(until).astimezone(local_zone(env))
    return f"until {local.strftime('%Y-%m-%d %H:%M %Z')}"


def _label(agent: str, schedule: str | None) -> str:
    return f"{agent}/{schedule}" if schedule else f"{agent} (every schedule)"


def _target(name: str, schedule_id: str | None) -> tuple[Any, Any, str | None]:
    """(env, the loaded agent, the schedule id or None) of a command line, after checking
    that the agent is one of the daemon's and the schedule one of its own."""
    from dotagent.cli._agents import find_agent, pick_schedule
    from dotagent.cli.app import invocation_env
    from dotagent.discovery import discover

    env = invocation_env()
    found = discover(env, include_cwd=False)  # the daemon's agents (S15.8)
    loaded = find_agent(name, found)
    schedule = pick_schedule(loaded, schedule_id).id if schedule_id is not None else None
    return env, (found, loaded), schedule


@click.command("pause")
@click.argument("name", shell_complete=complete_agent)
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Pause only this schedule of the agent.")
@click.option("--for", "duration", metavar="DURATION",
              help="End the pause by itself after DURATION (`30m`, `2h`, `1d`, `1d12h`).")
def pause_command(name: str, schedule_id: str | None, duration: str | None) -> int:
    """Stop dispatching an agent (or one of its schedules) until `dotagent resume`, or for
    DURATION.

    While paused, the daemon and `tick` run nothing for it (no run, no retry), windows that
    come due are settled without a run (none of them fires when the pause ends), and it
    raises no alert. `run` and `run-now` still run it when asked. A run in progress is not
    stopped.
    """
    from datetime import timedelta

    from dotagent.alerts.snooze import parse_duration
    from dotagent.audit import AuditLog, events
    from dotagent.clock import utc_now
    from dotagent.daemon.pidfile import poke_daemon
    from dotagent.errors import StateError, UsageError
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.state.pause import Pauses
    from dotagent.timefmt import iso

    seconds = None
    if duration is not None:
        seconds = parse_duration(duration)
        if seconds is None:
            raise UsageError(f"invalid --for {duration!r}: expected days, hours and minutes "
                             "such as 30m, 2h, 1d or 1d12h (more than 0, at most 366 days); "
                             "leave --for out to pause until `dotagent resume`")
    env, (_, loaded), schedule = _target(name, schedule_id)
    home = Home.from_env(env)
    tighten_home(home)
    now = utc_now()
    until = None if seconds is None else now + timedelta(seconds=seconds)
    store = Pauses(home)
    before = store.active(loaded.name, schedule, now.timestamp())
    try:
        store.pause(loaded.name, schedule, None if until is None else int(until.timestamp()),
                    now.timestamp())
    except OSError as exc:
        raise StateError(f"cannot write {store.path}: {exc.strerror or exc}") from exc
    AuditLog(home).append(events.AgentPaused(
        agent=loaded.name, schedule=schedule or "",
        until_iso="" if until is None else iso(until),
        reason="paused until resumed" if until is None else
        f"paused for {duration.strip() if duration else ''}"))
    poke_daemon(home)
    ends = None if until is None else int(until.timestamp())
    line = f"paused {_label(loaded.name, schedule)} {_when(ends, env)}"
    if before is not None and before.key == (f"{loaded.name}/{schedule}" if schedule
                                             else loaded.name):
        line += f" (was paused {_when(before.until, env)})"
    sys.stdout.write(line + "\n")
    return 0


@click.command("resume")
@click.argument("name", shell_complete=complete_agent)
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Resume only this schedule (paused on its own with --schedule).")
def resume_command(name: str, schedule_id: str | None) -> int:
    """Lift a pause: the agent (or the schedule) is dispatched again from its next window.

    Without --schedule every pause of the agent is lifted. Windows that came due while it
    was paused stay settled, unrun. Resuming what is not paused says so and changes nothing.
    """
    from dotagent.audit import AuditLog, events
    from dotagent.clock import utc_now
    from dotagent.daemon.pidfile import poke_daemon
    from dotagent.daemon.settle import pause_verdict, settle
    from dotagent.daemon.tick import load_entries
    from dotagent.errors import StateError, UsageError
    from dotagent.localzone import local_zone
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.state.pause import Pauses
    from dotagent.state.windows import WindowStore

    env, (found, loaded), schedule = _target(name, schedule_id)
    home = Home.from_env(env)
    agent = loaded.name
    now = utc_now()
    ts = now.timestamp()
    store = Pauses(home)
    table = store.table()
    live = {k: p for k, p in table.items() if p.active(ts)}
    mine = [k for k in live if k == agent or k.startswith(f"{agent}/")]
    if schedule is not None:
        wide = live.get(agent)
        if f"{agent}/{schedule}" not in live and wide is not None:
            raise UsageError(f"{agent}/{schedule} is paused with the whole agent "
                             f"({_when(wide.until, env)}); `dotagent resume {agent}` lifts "
                             "that pause (every schedule of the agent)")
        mine = [k for k in mine if k == f"{agent}/{schedule}"]
    if not mine:
        sys.stdout.write(f"{_label(agent, schedule)} is not paused; nothing to resume\n")
        return 0
    tighten_home(home)
    # Windows that came due while it was paused and that nobody settled (no daemon ran):
    # settled now, while the pause still holds, so that none of them runs on resume.
    zone = local_zone(env)
    windows = WindowStore(home, zone=zone)
    settled = 0
    for entry in load_entries(found, home, zone, windows=windows):
        if entry.agent != agent or (schedule is not None and entry.schedule.id != schedule):
            continue
        decision = entry.decide(now)
        verdict = pause_verdict(entry, decision, table, now)
        if verdict is not None and verdict[0] == "settle" and decision.window is not None:
            settle(entry, decision.window, "paused", windows)
            settled += 1
    try:
        lifted = store.resume(agent, schedule, ts)
    except OSError as exc:
        raise StateError(f"cannot write {store.path}: {exc.strerror or exc}") from exc
    audit = AuditLog(home)
    for pause in lifted:
        audit.append(events.AgentResumed(
            agent=agent, schedule=pause.schedule or "",
            reason=f"resumed before its end (it was paused {_when(pause.until, env)})"
            + (f"; {settled} window(s) that came due while paused settled unrun"
               if settled else "")))
    poke_daemon(home)
    for pause in lifted:
        what = f"{agent}/{pause.schedule}" if pause.schedule else f"{agent} (every schedule"
        sep = " (" if pause.schedule else "; "
        sys.stdout.write(f"resumed {what}{sep}it was paused {_when(pause.until, env)})\n")
    return 0
