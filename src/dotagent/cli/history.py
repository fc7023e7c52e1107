"""`dotagent history [NAME] [--schedule ID] [-n N] [--since T] [--failed] [--stats] [--json]`
and `dotagent history show ID [--json]`: the run history, from the history database."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import datetime, tzinfo
from typing import Any

import click

from dotagent.cli._agents import complete_agent, complete_schedule
from dotagent.cli._since import SINCE_HELP, parse_since
from dotagent.cli._style import paint, terminal_safe, use_color
from dotagent.errors import UsageError

__all__ = ["command", "duration_text"]

DEFAULT_LIMIT = 20
_COLOURS = {"ok": "green", "running": "cyan", "interrupted": "yellow"}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@click.command("history")
@click.argument("name", required=False, metavar="[NAME | show ID]",
                shell_complete=complete_agent)
@click.argument("run_id", required=False, metavar="")
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Only this schedule's runs.")
@click.option("-n", "limit", type=click.IntRange(min=1), metavar="N",
              help=f"At most N runs, the newest (default {DEFAULT_LIMIT}).")
@click.option("--since", "since_text", metavar="T", help="Only runs started since T: " + SINCE_HELP)
@click.option("--failed", is_flag=True,
              help="Only runs that failed, timed out, could not start, were refused by a "
                   "preflight or were interrupted.")
@click.option("--stats", is_flag=True,
              help="Per agent/schedule: runs, success rate, p50/p95 duration.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(name: str | None, run_id: str | None, schedule_id: str | None, limit: int | None,
            since_text: str | None, failed: bool, stats: bool, as_json: bool) -> int:
    """List recorded runs, newest first, from the history database.

    NAME limits the list to one agent. `history show ID` prints the whole output of run ID
    (the ids are in the first column), read back from the agent's log.
    """
    from dotagent.cli.app import invocation_env
    from dotagent.localzone import local_zone
    from dotagent.paths import Home

    env = invocation_env()
    home = Home.from_env(env)
    zone = local_zone(env)
    if name == "show" and run_id is not None:
        for given, flag in ((schedule_id, "--schedule"), (limit, "-n"), (since_text, "--since"),
                            (failed or None, "--failed"), (stats or None, "--stats")):
            if given is not None:
                raise UsageError(f"{flag} does not apply to `history show ID`")
        return _show(home, zone, run_id, as_json)
    if run_id is not None:
        raise UsageError(f"history takes one agent NAME, or `show ID` (got {name!r} and "
                         f"{run_id!r})")
    since = parse_since(since_text)
    since_epoch = None if since is None else since.timestamp()
    from dotagent.api import history as api

    known = _known(env)
    if stats:
        for given, flag in ((limit, "-n"), (failed or None, "--failed")):
            if given is not None:
                raise UsageError(f"{flag} does not apply to `history --stats`")
        report = api.run_stats(home, agent=name, schedule=schedule_id, since=since_epoch,
                               known=known)
        if as_json:
            sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        else:
            _render_stats(report.stats)
        return 0
    from dotagent.errors import NotFoundError

    try:
        runs = api.list_runs(home, zone, agent=name, schedule=schedule_id,
                             limit=limit or DEFAULT_LIMIT, since=since_epoch,
                             failed_only=failed, known=known)
    except NotFoundError as exc:
        if name == "show":
            raise NotFoundError(exc.message + "; to print a run's output: dotagent history "
                                "show ID") from None
        raise
    if as_json:
        sys.stdout.write(json.dumps(runs.to_json(), ensure_ascii=False) + "\n")
    else:
        _render_runs(runs.runs, zone)
    return 0


def _known(env: dict[str, str]) -> Any:
    """An agent's schedule ids from its manifest; discovery happens only when asked."""

    def known(agent: str) -> list[str] | None:
        from dotagent.api.history import manifest_schedules
        from dotagent.discovery import discover

        return manifest_schedules(discover(env, include_cwd=False))(agent)

    return known


def _show(home: Any, zone: tzinfo, run_text: str, as_json: bool) -> int:
    from dotagent.api.history import run_output
    from dotagent.display import quote_name

    try:
        run_id = int(run_text)
    except ValueError:
        raise UsageError(f"a run ID is a number, as the first column of `dotagent history` "
                         f"shows it (got {run_text!r})") from None
    report = run_output(home, zone, run_id)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        return 0
    run = report.run
    label = f"run {run.id} ({quote_name(run.agent)}, schedule {quote_name(run.schedule)})"
    if report.text is not None:
        files = ", ".join(report.text.files)
        state = "" if report.text.complete else (
            "; still running" if run.outcome == "running" else
            "; its end is not in the log")
        note = f"{label}: its output in the agent's log ({files}){state}"
    elif report.source == "stderr_tail":
        note = (f"{label}: its output is no longer in the agent's log; the end of its stderr, "
                "as the history keeps it:")
    else:
        note = f"{label}: its output is no longer in the agent's log, and the history keeps none"
    from dotagent.cli import _streams

    _streams.say(f"[dotagent] {note}\n")
    sys.stdout.write(terminal_safe(report.output))
    return 0


# -- rendering --------------------------------------------------------------------------------
def _local(epoch: float | None, zone: tzinfo) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S")


def _fit(rows: list[list[str]], flex: int) -> list[list[str]]:
    """Cut column `flex` (with …) so that every row fits the terminal's width."""
    width = shutil.get_terminal_size((100, 24)).columns
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    over = sum(widths) + 2 * (len(widths) - 1) - width
    if over > 0:
        keep = max(8, widths[flex] - over)
        for r in rows:
            if len(r[flex]) > keep:
                r[flex] = r[flex][: keep - 1] + "…"
    return rows


def _table(rows: list[list[str]], flex: int, colour_of: Any = None) -> None:
    from dotagent.display import printable

    rows = [[printable(c) for c in r] for r in rows]
    rows = _fit(rows, flex)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for number, r in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=True)]
        if number == 0:
            line = "  ".join(cells).rstrip()
            sys.stdout.write((paint(line, "white", bold=True) if use_color() else line) + "\n")
            continue
        if colour_of is not None:
            cells = colour_of(r, cells)
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def _render_runs(runs: list[Any], zone: tzinfo) -> None:
    if not runs:
        sys.stdout.write("no runs match\n")
        return
    rows = [["ID", "STARTED", "AGENT/SCHEDULE", "SOURCE", "TRY", "OUTCOME", "EXIT", "DURATION"]]
    for r in runs:
        rows.append([str(r.id), _local(r.started_at, zone), f"{r.agent}/{r.schedule}",
                     r.source, str(r.attempt), r.outcome,
                     "-" if r.exit_code is None else str(r.exit_code),
                     duration_text(r.duration_seconds)])

    def colour(row: list[str], cells: list[str]) -> list[str]:
        cells[5] = paint(cells[5], _COLOURS.get(row[5], "red"))
        return cells

    _table(rows, 2, colour)


def _render_stats(stats: list[Any]) -> None:
    if not stats:
        sys.stdout.write("no runs match\n")
        return
    rows = [["AGENT/SCHEDULE", "RUNS", "OK", "FAILED", "SUCCESS", "P50", "P95"]]
    for s in stats:
        rate = "-" if s.success_rate is None else f"{s.success_rate * 100:.1f}%"
        rows.append([f"{s.agent}/{s.schedule}", str(s.runs), str(s.ok), str(s.failed), rate,
                     duration_text(s.p50_seconds), duration_text(s.p95_seconds)])
    _table(rows, 0)
