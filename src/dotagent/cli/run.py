"""`dotagent run NAME [--schedule ID] [--dry-run]`: one run in the foreground."""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

from dotagent.cli import _streams
from dotagent.cli._agents import complete_agent, complete_schedule, find_agent, pick_schedule
from dotagent.cli.app import AgentStatusCommand
from dotagent.display import printable, quote_name

__all__ = ["command", "report_cache_findings"]


def _echo(stream: str, chunk: bytes) -> None:
    """Show output live. The standard streams never raise (`_streams`): a reader that went
    away or a full disk silences the echo, never the agent; the run goes on and is still
    logged and recorded."""
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.flush()
    out.buffer.write(chunk)
    out.buffer.flush()


def _say(text: str) -> None:
    _streams.say(text)


def report_cache_findings(report: Any) -> None:
    """Tell the person at the terminal what was just recorded as critical."""
    for name in report.phantoms:
        _say(f"[dotagent] warning: phantom agent {quote_name(name)}: never seen before "
             "(recorded in the audit log)\n")
    for d in report.drifts:
        _say(f"[dotagent] warning: manifest of {quote_name(d.agent)} changed since last seen "
             f"({d.expected_sha256[:12]} → {d.actual_sha256[:12]}; recorded in the audit "
             "log)\n")
    if report.history_deleted:
        _say("[dotagent] warning: audit.log is missing or empty although dotagent has run "
             "here before (recorded as critical audit_chain_broken)\n")
    if report.cache_missing:
        _say(f"[dotagent] warning: {printable(report.cache_missing)} (recorded as critical "
             "manifest_cache_missing; not treated as a first start)\n")
    for path in report.invalid:
        _say(f"[dotagent] warning: manifest {printable(str(path))} is invalid (recorded as "
             "critical manifest_invalid; `dotagent doctor` shows why)\n")


def report_plugin_findings(plugins: Any) -> None:
    """The plugin registry's findings (security.plugins.check_plugins), for the terminal."""
    if plugins.registry_problem is not None:
        _say(f"[dotagent] warning: {plugins.registry_problem}\n")
    for drift in plugins.drifts:
        _say(f"[dotagent] warning: plugin {quote_name(drift.name)} at "
             f"{printable(str(drift.path))} changed since first seen (recorded in the "
             "audit log)\n")


@click.command("run", cls=AgentStatusCommand)
@click.argument("name", shell_complete=complete_agent)
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Schedule to run (may be omitted when the agent has only one).")
@click.option("--dry-run", is_flag=True,
              help="Set AGENT_DRY_RUN=true and leave the heartbeat alone.")
def command(name: str, schedule_id: str | None, dry_run: bool) -> int:
    """Run one schedule of an agent now, in the foreground.

    Output streams to the terminal and is appended to the agent's log; the run is recorded in
    the audit log. The exit code is the agent's (124 on timeout, 128+N when killed by signal
    N, 127/126 when the command cannot start). dotagent's own refusals exit 2 (usage) or
    64-78 (sysexits: 66 no such agent or schedule, 73 state not writable, ...).
    """
    import signal

    from dotagent.audit import AuditLog
    from dotagent.cli._config import enforcement, load_store, log_limits
    from dotagent.cli._trust import gate
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.discovery import discover
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.runner.lifecycle import RunDeps, RunRequest, execute
    from dotagent.runner.process import StoppedBeforeStart, StopRequest
    from dotagent.security.manifests import check_manifests
    from dotagent.security.plugins import check_plugins
    from dotagent.state.history import History

    env = invocation_env()
    home = Home.from_env(env)
    found = discover(env, include_cwd=True)  # `run` also searches ./agents and ./ (S15.8)
    loaded = find_agent(name, found)
    schedule = pick_schedule(loaded, schedule_id)
    tighten_home(home)  # what older versions created 0644/0755 becomes private (S15.11)
    audit = AuditLog(home)
    # TERM, INT and HUP stop the agent gracefully and the run is still recorded; before the
    # agent starts they abandon the run at once, and nothing is recorded as a run.
    try:
        with StopRequest(abort_before_start=True) as stop, History(home) as history:
            # Like every command that executes agents: check every manifest before running any.
            now = utc_now()
            cache = check_manifests(home, found, now, audit=audit)
            report_cache_findings(cache)
            report_plugin_findings(check_plugins(home, found, now, env=env, audit=audit))
            gate(home, found, now, audit=audit, cache=cache, agent=loaded.name)
            # `run` fires no hooks and keeps no window state (S3.7); it is in the history.
            request = RunRequest(loaded=loaded, schedule=schedule, source="run", dry_run=dry_run,
                                 hooks=False, echo=_echo, stop=stop)
            # Secrets only when this agent asks for some (`[env] secrets`): `run` fires no
            # notifiers, so otherwise it has no use for them (S3.7).
            secrets = load_store(home, env, audit) if loaded.manifest.env.secrets else {}
            report = execute(request, RunDeps(home=home, audit=audit, env=env, history=history,
                                              say=_say, log_limits=log_limits(home),
                                              secrets=secrets,
                                              enforcement=enforcement(home)))
    except StoppedBeforeStart as exc:
        signame = signal.Signals(exc.signum).name
        _say(f"[dotagent] agent {quote_name(loaded.name)}: {signame} received before the agent "
             "started; nothing was run\n")
        return 128 + exc.signum
    outcome = report.outcome
    assert outcome is not None  # no preflight for `run`
    label = f"agent {quote_name(outcome.agent)}, schedule {quote_name(outcome.schedule)}"
    for stream, problem in outcome.echo_errors:
        _say(f"[dotagent] warning: {label}: could not show the agent's {stream} "
             f"({problem}); it is in the log\n")
    shown = _streams.failure("stdout")
    if shown is not None and shown.errno != errno.EPIPE:
        _say(f"[dotagent] warning: {label}: could not show the agent's output (standard "
             f"output: {shown.strerror or shown}); it is in the log\n")
    if outcome.interrupted_by is not None:
        signame = signal.Signals(outcome.interrupted_by).name
        _say(f"[dotagent] {label}: interrupted by {signame}; agent stopped (exit "
             f"{outcome.exit_code})\n")
        return 128 + outcome.interrupted_by
    if outcome.start_error:
        _say(f"[dotagent] {label}: {outcome.start_error} (exit {outcome.exit_code})\n")
    elif outcome.timed_out:
        _say(f"[dotagent] {label}: timeout (exit {outcome.exit_code})\n")
    elif outcome.limit:
        _say(f"[dotagent] {label}: {outcome.limit} (exit {outcome.exit_code})\n")
    if outcome.output_cut:
        _say(f"[dotagent] {label}: output cut in the log at [limits] max_output_mb\n")
    return outcome.exit_code
