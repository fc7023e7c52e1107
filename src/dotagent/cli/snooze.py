"""`dotagent snooze NAME DURATION [--schedule ID]` / `dotagent snooze NAME off`."""

from __future__ import annotations

import sys

import click

from dotagent.cli._agents import complete_agent, complete_schedule

__all__ = ["command"]


@click.command("snooze")
@click.argument("name", shell_complete=complete_agent)
@click.argument("duration", metavar="DURATION|off")
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Snooze only this schedule of the agent.")
def command(name: str, duration: str, schedule_id: str | None) -> int:
    """Silence an agent's alerts for DURATION (`30m`, `2h`, `1d`, `1d12h`), or lift the
    snooze with `off`.

    Runs still run and the audit log still records them; only notices (given up, stale,
    reminders, duration anomalies) are not sent. The snooze ends by itself.
    """
    from datetime import timedelta

    from dotagent.alerts.snooze import Snoozes, parse_duration
    from dotagent.audit import AuditLog, events
    from dotagent.cli._agents import find_agent, pick_schedule
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.discovery import discover
    from dotagent.errors import StateError, UsageError
    from dotagent.localzone import local_zone
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.timefmt import iso

    env = invocation_env()
    home = Home.from_env(env)
    lift = duration.strip().lower() == "off"
    seconds = None if lift else parse_duration(duration)
    if not lift and seconds is None:
        raise UsageError(f"invalid DURATION {duration!r}: expected a number of days, hours "
                         "and minutes such as 30m, 2h, 1d or 1d12h (at most 366 days), or "
                         "`off`")
    loaded = find_agent(name, discover(env, include_cwd=False))
    schedule = pick_schedule(loaded, schedule_id).id if schedule_id is not None else None
    tighten_home(home)
    now = utc_now()
    until = None if seconds is None else now + timedelta(seconds=seconds)
    try:
        Snoozes(home).set(loaded.name, schedule,
                          None if until is None else int(until.timestamp()), now.timestamp())
    except OSError as exc:
        raise StateError(f"cannot write the snoozes: {exc}") from exc
    label = loaded.name + (f"/{schedule}" if schedule else "")
    AuditLog(home).append(events.AgentSnoozed(
        agent=loaded.name, schedule=schedule or "",
        until_iso="" if until is None else iso(until),
        reason="lifted" if until is None else f"snoozed for {duration.strip()}"))
    if until is None:
        sys.stdout.write(f"alerts of {label} are no longer snoozed\n")
    else:
        local = until.astimezone(local_zone(env))
        sys.stdout.write(f"alerts of {label} snoozed until "
                         f"{local.strftime('%Y-%m-%d %H:%M %Z')}\n")
    return 0
