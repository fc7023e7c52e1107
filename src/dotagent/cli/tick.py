"""`dotagent tick [--dry-run] [--json]`: one scheduling step, in the foreground."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import click

from dotagent.cli import _streams

__all__ = ["command"]


@click.command("tick")
@click.option("--dry-run", is_flag=True, help="Say what would run; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--verbose", is_flag=True, hidden=True)  # upstream's no-op flag
def command(dry_run: bool, as_json: bool, verbose: bool) -> int:
    """Run everything that is due now, once, as the daemon would, then exit.

    Sees the daemon's agents ($DOTAGENT_ROOT and $DOTAGENT_HOME/agents). Due windows run one
    after the other with hooks and notifiers; windows too old to run are recorded as missed,
    exhausted ones as given up. With --dry-run nothing runs and nothing is written.
    """
    from dotagent.audit import AuditLog
    from dotagent.cli._config import enforcement, load_store, log_limits
    from dotagent.cli._notify import foreground_outbox, run_notifiers
    from dotagent.cli._trust import gate
    from dotagent.cli.app import invocation_env
    from dotagent.cli.run import report_cache_findings, report_plugin_findings
    from dotagent.clock import from_epoch, utc_now
    from dotagent.daemon.settle import active_pause, hold_wakes, pause_verdict, settle
    from dotagent.daemon.tick import apply_settlement, load_entries, plan, record_skipped, refresh
    from dotagent.discovery import discover
    from dotagent.localzone import local_zone
    from dotagent.paths import Home
    from dotagent.plugins.hooks import PluginHooks
    from dotagent.private import tighten_home
    from dotagent.runner.lifecycle import AgentBusy, RunDeps, RunRequest, execute
    from dotagent.security.manifests import check_manifests
    from dotagent.security.plugins import check_plugins
    from dotagent.state.history import History
    from dotagent.state.pause import Pauses
    from dotagent.state.windows import WindowStore
    from dotagent.timefmt import iso

    env = invocation_env()
    home = Home.from_env(env)
    found = discover(env, include_cwd=False)  # the daemon's agents (S15.8)
    zone = local_zone(env)
    now = utc_now()
    audit = AuditLog(home)
    if not dry_run:
        tighten_home(home)
        cache = check_manifests(home, found, now, audit=audit)
        report_cache_findings(cache)
        report_plugin_findings(check_plugins(home, found, now, env=env, audit=audit))
        found = gate(home, found, now, audit=audit, cache=cache)
    windows = WindowStore(home, zone=zone)
    entries = load_entries(found, home, zone, windows=windows)
    decisions = plan(entries, now)
    pauses = Pauses(home).table()
    lines: list[str] = []
    dispatched: list[dict[str, Any]] = []
    settled: list[dict[str, Any]] = []
    paused: list[dict[str, Any]] = []
    held: list[datetime] = []  # when a paused schedule's held retry is looked at again
    after = []
    # Loaded before anything runs, so a bad file is reported before a notifier needs it
    # (S14.10); --dry-run runs and records nothing, so it reads no secrets either.
    secrets: Mapping[str, str] = {} if dry_run else load_store(home, env, audit)
    outbox = foreground_outbox(home, audit, env, secrets=secrets)
    alerts = None if dry_run else _alerts(home, outbox, zone, audit)
    with History(home) as history, contextlib.closing(outbox):
        deps = RunDeps(home=home, audit=audit, env=env, history=history, windows=windows,
                       log_limits=None if dry_run else log_limits(home),
                       say=_streams.say, secrets=secrets, enforcement=enforcement(home))
        deps.hooks = PluginHooks(home, audit, env, say=_streams.say)
        for entry, decision in decisions:
            label = f"{entry.agent}/{entry.schedule.id}"
            action = decision.action
            live = active_pause(pauses, entry.agent, entry.schedule.id, now.timestamp()) \
                if pauses else None
            if live is not None:
                paused.append({"agent": entry.agent, "schedule": entry.schedule.id,
                               "until": None if live.until is None else
                               iso(from_epoch(live.until))})
            verdict = pause_verdict(entry, decision, pauses, now) if pauses else None
            if verdict is not None:
                if verdict[0] == "hold":  # a retry or give-up waits for the pause to end
                    lines.append(f"paused {label}: its {action.replace('_', ' ')} waits "
                                 "until the pause ends")
                    held.extend(hold_wakes(entry, verdict[1], now))
                    continue
                assert decision.window is not None
                settled.append({"agent": entry.agent, "schedule": entry.schedule.id,
                                "window": iso(decision.window), "action": "paused"})
                if dry_run:
                    lines.append(f"would settle {label} unrun: paused (window "
                                 f"{iso(decision.window)})")
                    after.append(entry)
                    continue
                quiet = settle(entry, decision.window, "paused", windows)
                lines.append(f"settled {label} unrun: paused (window {iso(decision.window)})")
                after.append(refresh(entry, home, windows, window=quiet))
                continue
            if action in ("run", "retry"):
                assert decision.window is not None
                attempt = f"attempt {decision.attempt}/{entry.policy.max_attempts}"
                if dry_run:
                    lines.append(f"would dispatch {label}  {attempt}")
                    dispatched.append({"agent": entry.agent, "schedule": entry.schedule.id,
                                       "attempt": decision.attempt,
                                       "window": iso(decision.window), "result": None})
                    after.append(entry)
                    continue
                record_skipped(entry, decision, record=lambda e: audit.append(e))
                request = RunRequest(loaded=entry.loaded, schedule=entry.schedule,
                                     source="tick", window=entry.window(decision.window),
                                     policy=entry.policy, stdin_devnull=True)
                notifiers = run_notifiers(outbox, entry.loaded)
                if alerts is not None:  # the ladder announces given_up, as in the daemon
                    from dotagent.alerts.seam import LadderOwnsGivenUp
                    notifiers = tuple(LadderOwnsGivenUp(n) for n in notifiers)
                try:
                    report = execute(request, replace(deps, notifiers=notifiers))
                except AgentBusy as exc:
                    lines.append(f"skipped {label}: {exc.message}")
                    after.append(entry)
                    continue
                state = "ok" if report.ok else (
                    "aborted by preflight" if not report.ran else f"failed (exit "
                    f"{report.exit_code})")
                if alerts is not None:
                    _after_run(alerts, entry, report, history)
                lines.append(f"ran {label}  {attempt}  {state}")
                dispatched.append({"agent": entry.agent, "schedule": entry.schedule.id,
                                   "attempt": decision.attempt, "window": iso(decision.window),
                                   "result": report.to_json()["result"]})
                after.append(refresh(entry, home, windows))
            elif action in ("missed", "give_up"):
                assert decision.window is not None
                what = "missed" if action == "missed" else "given up"
                settled.append({"agent": entry.agent, "schedule": entry.schedule.id,
                                "window": iso(decision.window), "action": action})
                if dry_run:
                    lines.append(f"would record {label} as {what} (window "
                                 f"{iso(decision.window)})")
                    after.append(entry)
                    continue
                apply_settlement(entry, decision, windows=windows, record=lambda e: audit.append(e),
                                 now=now)
                lines.append(f"recorded {label} as {what} (window {iso(decision.window)})")
                after.append(refresh(entry, home, windows))
            else:
                after.append(entry)
    later = utc_now()
    upcoming = [t for t in (e.next_due(later) for e in after if not dry_run) if t is not None]
    upcoming += [t for t in held if t > now]
    if dry_run:
        upcoming = [t for t in (e.next_due(now) for e in after) if t is not None and t > now]
        upcoming += [t for t in held if t > now]
    next_event = iso(min(upcoming)) if upcoming else None
    agents = len({e.agent for e in entries})
    if as_json:
        sys.stdout.write(json.dumps({"dry_run": dry_run, "scanned": agents,
                                     "dispatched": dispatched, "settled": settled,
                                     "paused": paused, "next_event": next_event}) + "\n")
        return 0
    for line in lines:
        sys.stdout.write(line + "\n")
    prefix = "(dry-run) " if dry_run else ""
    verb = "would dispatch" if dry_run else "dispatched"
    sys.stdout.write(f"{prefix}scanned {agents} agent(s); {verb} {len(dispatched)}; next "
                     f"event: {next_event or '—'}\n")
    return 0


def _alerts(home: Any, outbox: Any, zone: Any, audit: Any) -> Any:
    """The daemon's alert ladder and duration check, for the runs of this step (a broken
    config.toml: its defaults). Notices go out through this command's outbox and are waited
    for like the runs' own."""
    from dotagent.alerts.seam import OutboxSender
    from dotagent.alerts.service import Alerts
    from dotagent.config import Config, load_config

    config = load_config(home).config or Config()

    def record(event: Any) -> None:
        with contextlib.suppress(Exception):
            audit.append(event)

    return Alerts(home, config, OutboxSender(outbox), zone=zone,
                  log=lambda text: _streams.say(f"[dotagent] {text}\n"), record=record)


def _after_run(alerts: Any, entry: Any, report: Any, history: Any) -> None:
    from dotagent.clock import utc_now

    try:
        alerts.run_finished(entry, report, utc_now(), history=history)
    except Exception as exc:  # an alert never changes what the step did
        _streams.say(f"[dotagent] error: alerts after {entry.agent}/{entry.schedule.id}: "
                     f"{exc}\n")

