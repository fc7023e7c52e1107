"""`dotagent daily-summary [--dry-run]`: the summary of every monitored schedule, now."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from dotagent.alerts.summary import SummaryLine
    from dotagent.paths import Home

__all__ = ["command"]


@click.command("daily-summary")
@click.option("--dry-run", is_flag=True,
              help="Print the summary and where it would go; send nothing.")
def command(dry_run: bool) -> int:
    """Send today's summary of every monitored agent's health to the
    `[daily_summary]` notifiers (desktop when none are configured).

    The daemon sends it by itself once a day at `[daily_summary] time`; this command sends
    it now, whatever `enabled` says, and waits for the deliveries to finish.
    """
    from dotagent.alerts.service import Alerts
    from dotagent.alerts.summary import drivers, summary_body
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.config import load_config
    from dotagent.localzone import local_zone
    from dotagent.paths import Home

    env = invocation_env()
    home = Home.from_env(env)
    config = load_config(home).require()
    zone = local_zone(env)
    now = utc_now()
    lines = summary_lines(home, env, zone, now)
    day = now.astimezone(zone).date()
    if dry_run:
        alerts = Alerts(home, config, _NoSender(), zone=zone, log=_say)
        entries = alerts.summary_entries()
        sys.stdout.write(summary_body(day, lines) + "\n")
        sys.stdout.write(f"→ would deliver to: {', '.join(drivers(entries))}\n")
        return 0
    from dotagent.alerts.seam import Message, OutboxSender
    from dotagent.alerts.service import _no_events
    from dotagent.audit import AuditLog
    from dotagent.cli._config import load_store
    from dotagent.cli._notify import foreground_outbox

    audit = AuditLog(home)
    # S14.10: a command that fires notifiers loads the secrets store (`${VAR}`).
    outbox = foreground_outbox(home, audit, env, secrets=load_store(home, env, audit))
    sender = OutboxSender(outbox)
    try:
        alerts = Alerts(home, config, sender, zone=zone, log=_say)
        entries = alerts.summary_entries()
        message = Message("daily_summary", "", "", summary_body(day, lines),
                          title="dotagent: daily summary")
        alerts.deliver(message, [_no_events(e) for e in entries], now, quiet=False,
                       snooze=False)
    finally:
        outbox.close()
    sent = [d.driver for d in sender.last if d.ok]
    failed = [f"{d.driver} ({d.reason or d.status})" for d in sender.last if not d.ok]
    if sent:
        sys.stdout.write(f"daily summary sent to: {', '.join(sent)}\n")
    if failed:
        _say(f"error: daily summary not delivered to: {'; '.join(failed)}")
        return 1
    return 0


class _NoSender:
    def send(self, message: object, entries: object) -> None:
        return None


def _say(text: str) -> None:
    from dotagent.cli import _streams

    _streams.say(f"[dotagent] {text}\n")


def summary_lines(home: Home, env: Mapping[str, str], zone: tzinfo,
                  now: datetime) -> list[SummaryLine]:
    """One line per schedule of every monitored agent, with its health now."""
    from dotagent.alerts.summary import SummaryLine
    from dotagent.daemon.tick import load_entries
    from dotagent.discovery import discover
    from dotagent.schedule.windows import health

    found = discover(dict(env), include_cwd=False)
    out: list[SummaryLine] = []
    for entry in load_entries(found, home, zone):
        h = health(entry.rule, entry.state, entry.policy, now)
        out.append(SummaryLine(entry.agent, entry.schedule.id, h.state, h.reason))
    return out
