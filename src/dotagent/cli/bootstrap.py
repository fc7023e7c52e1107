"""`dotagent bootstrap [--dry-run] [--json]`: settle every window due now, so that a fresh
install (or a home brought back after a long time) fires no burst and raises no alert."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["command"]


@click.command("bootstrap")
@click.option("--dry-run", is_flag=True, help="Say what would be settled; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(dry_run: bool, as_json: bool) -> int:
    """Mark the current window of every schedule handled, without running it.

    For each schedule of the daemon's agents ($DOTAGENT_ROOT and $DOTAGENT_HOME/agents;
    `monitor = false` ones are not scheduled), the latest window due now is recorded as
    settled unless something already handled it (a run, a retry, a give-up): the daemon's
    next decision is then the next window, and nothing is stale. Safe to run twice; a
    running daemon is told.
    """
    from dotagent.audit import AuditLog, events
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.daemon.pidfile import poke_daemon
    from dotagent.daemon.settle import bootstrap_plan, settle
    from dotagent.daemon.tick import load_entries
    from dotagent.discovery import discover
    from dotagent.localzone import local_zone
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.state.windows import WindowStore
    from dotagent.timefmt import iso

    env = invocation_env()
    home = Home.from_env(env)
    zone = local_zone(env)
    found = discover(env, include_cwd=False)  # the daemon's agents (S15.8)
    windows = WindowStore(home, zone=zone)
    now = utc_now()
    entries = load_entries(found, home, zone, windows=windows)
    plan = bootstrap_plan(entries, now)
    done = []
    if not dry_run and plan:
        tighten_home(home)
    for item in plan:
        entry = item.entry
        if not dry_run:
            # Looked at again just before writing: a run that began since (the daemon's)
            # has made the window its own.
            current = windows.load(entry.agent, entry.schedule.slug, item.window)
            if current is not None and (current.attempts > 0 or current.settled is not None):
                continue
            settle(entry, item.window, "bootstrap", windows)
        done.append(item)
    if done and not dry_run:
        AuditLog(home).append(events.WindowsBootstrapped(
            count=len(done), schedules=len(entries),
            reason=f"{len(done)} window(s) due at {iso(now)} settled without a run"))
        poke_daemon(home)
    if as_json:
        sys.stdout.write(json.dumps({
            "dry_run": dry_run,
            "schedules": len(entries),
            "settled": [{"agent": i.entry.agent, "schedule": i.entry.schedule.id,
                         "window": iso(i.window), "was": i.was} for i in done],
        }) + "\n")
        return 0
    verb = "would settle" if dry_run else "settled"
    for item in done:
        local = item.window.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        what = {"missed": " (recorded as missed)", "pending": " (recorded, not yet run)"}
        sys.stdout.write(f"{verb} {item.entry.agent}/{item.entry.schedule.id}: window "
                         f"{local}{what.get(item.was, '')}\n")
    prefix = "(dry-run) " if dry_run else ""
    if not done:
        sys.stdout.write(f"{prefix}nothing to settle: every one of {len(entries)} "
                         "schedule(s) is waiting for its next window or already handled\n")
    else:
        sys.stdout.write(f"{prefix}{verb} {len(done)} window(s) of {len(entries)} "
                         "schedule(s); each runs next at its next window\n")
    return 0
