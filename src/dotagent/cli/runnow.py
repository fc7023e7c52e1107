"""`dotagent run-now NAME [--schedule ID] [--json]`: one attempt with hooks, now."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from dotagent.cli import _streams
from dotagent.cli._agents import complete_agent, complete_schedule, find_agent, pick_schedule

__all__ = ["command"]


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


def _note_pause(home: Any, agent: str, schedule_id: str, env: dict[str, str]) -> None:
    """A paused schedule runs all the same (it was asked for by name); say it is paused."""
    from dotagent.clock import from_epoch, utc_now
    from dotagent.localzone import local_zone
    from dotagent.state.pause import Pauses

    pause = Pauses(home).active(agent, schedule_id, utc_now().timestamp())
    if pause is None:
        return
    until = "until resumed" if pause.until is None else "until " + from_epoch(
        pause.until).astimezone(local_zone(env)).strftime("%Y-%m-%d %H:%M %Z")
    _streams.say(f"[dotagent] note: {agent}/{schedule_id} is paused {until}; running it "
                 "anyway because it was asked for (the daemon will not)\n")


@click.command("run-now")
@click.argument("name", shell_complete=complete_agent)
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Schedule to run (may be omitted when the agent has only one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
def command(name: str, schedule_id: str | None, as_json: bool) -> int:
    """Run one schedule of a daemon agent now, with its preflights, sinks and notifiers.

    Unlike `run`, output is collected and shown when the agent ends, and the exit status is
    0 whenever the agent ran (its own status is in the output); the run does not touch the
    schedule's window. Refused with exit 1 while the agent is already running.
    """
    from dotagent.audit import AuditLog
    from dotagent.cli._config import enforcement, load_store, log_limits
    from dotagent.cli._notify import foreground_outbox, run_notifiers
    from dotagent.cli._trust import gate
    from dotagent.cli.app import invocation_env
    from dotagent.cli.run import report_cache_findings, report_plugin_findings
    from dotagent.clock import utc_now
    from dotagent.discovery import discover
    from dotagent.paths import Home
    from dotagent.plugins.hooks import PluginHooks
    from dotagent.private import tighten_home
    from dotagent.runner.lifecycle import RunDeps, RunRequest, execute
    from dotagent.runner.process import StopRequest
    from dotagent.security.manifests import check_manifests
    from dotagent.security.plugins import check_plugins
    from dotagent.state.history import History

    env = invocation_env()
    home = Home.from_env(env)
    found = discover(env, include_cwd=False)  # the daemon's agents (S15.8)
    loaded = find_agent(name, found)
    schedule = pick_schedule(loaded, schedule_id)
    tighten_home(home)
    _note_pause(home, loaded.name, schedule.id, env)
    audit = AuditLog(home)
    with StopRequest() as stop, History(home) as history:
        cache = check_manifests(home, found, utc_now(), audit=audit)
        report_cache_findings(cache)
        report_plugin_findings(check_plugins(home, found, utc_now(), env=env, audit=audit))
        gate(home, found, utc_now(), audit=audit, cache=cache, agent=loaded.name)
        request = RunRequest(loaded=loaded, schedule=schedule, source="run-now", stop=stop)
        secrets = load_store(home, env, audit)  # notifiers and [env] secrets need it (S14.10)
        outbox = foreground_outbox(home, audit, env, secrets=secrets)
        deps = RunDeps(home=home, audit=audit, env=env, history=history,
                       log_limits=log_limits(home), say=_streams.say, secrets=secrets,
                       notifiers=run_notifiers(outbox, loaded),
                       enforcement=enforcement(home))
        deps.hooks = PluginHooks(home, audit, env, say=_streams.say)
        try:
            report = execute(request, deps)
        finally:
            outbox.close()
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        return 0
    label = f"{report.request.agent}/{schedule.id}"
    o = report.outcome
    if o is None:
        assert report.preflight is not None
        suggest = f" ({report.preflight.suggest})" if report.preflight.suggest else ""
        sys.stdout.write(f"⊘ {label}  aborted by preflight {report.preflight.plugin}"
                         f"{suggest}\n")
        return 0
    if o.ok:
        head = f"✓ {label}  ok"
    elif o.timed_out:
        head = f"✗ {label}  timed out (exit {o.exit_code})"
    else:
        head = f"✗ {label}  failed (exit {o.exit_code})"
    sys.stdout.write(f"{head}  {o.duration_seconds:.1f}s\n")
    if o.start_error:
        sys.stdout.write(f"  could not start: {o.start_error}\n")
    if o.stdout_tail:
        sys.stdout.write("  stdout:\n" + _indent(o.stdout_tail))
    if o.stderr_tail:
        sys.stdout.write("  stderr:\n" + _indent(o.stderr_tail))
    for stream, dropped in (("stdout", o.stdout_dropped), ("stderr", o.stderr_dropped)):
        if dropped:
            sys.stdout.write(f"  ({dropped} earlier {stream} line(s) are only in the log)\n")
    return 0
