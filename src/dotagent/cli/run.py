"""`dotagent run NAME [--schedule ID] [--dry-run]`: one run in the foreground."""

from __future__ import annotations

import sys

import click

from dotagent.cli._agents import complete_agent, find_agent, pick_schedule

__all__ = ["command"]


def _echo(stream: str, chunk: bytes) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.buffer.write(chunk)
    out.buffer.flush()


@click.command("run")
@click.argument("name", shell_complete=complete_agent)
@click.option("--schedule", "-s", "schedule_id", metavar="ID",
              help="Schedule to run (may be omitted when the agent has only one).")
@click.option("--dry-run", is_flag=True,
              help="Set AGENT_DRY_RUN=true and leave the heartbeat alone.")
def command(name: str, schedule_id: str | None, dry_run: bool) -> int:
    """Run one schedule of an agent now, in the foreground.

    Output streams to the terminal and is appended to the agent's log; the exit code is the
    agent's (124 on timeout, 128+N when killed by signal N, 127/126 when the command cannot
    start).
    """
    from dotagent.paths import Home
    from dotagent.runner.foreground import run_schedule

    loaded = find_agent(name)
    schedule = pick_schedule(loaded, schedule_id)
    outcome = run_schedule(loaded, schedule, home=Home.from_env(), dry_run=dry_run, echo=_echo)
    label = f"{outcome.agent}/{outcome.schedule}"
    if outcome.start_error:
        sys.stderr.write(f"[dotagent] {label}: {outcome.start_error} (exit {outcome.exit_code})\n")
    elif outcome.timed_out:
        sys.stderr.write(f"[dotagent] {label}: timeout (exit {outcome.exit_code})\n")
    return outcome.exit_code
