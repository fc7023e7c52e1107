"""`dotagent status [--json]`: the health of every monitored schedule, failing first."""

from __future__ import annotations

import sys
from datetime import datetime, tzinfo
from typing import Any

import click

__all__ = ["command", "when"]

_ICONS = (("ok", "✅"), ("degraded", "⚠️"), ("failing", "❌"), ("stale", "🕑"),
          ("paused", "⏸"))


def when(moment: datetime | None, zone: tzinfo, now: datetime | None = None) -> str:
    """A time in a table cell: `MM-DD HH:MM` local, `now` when due, `—` when none."""
    if moment is None:
        return "—"
    if now is not None and moment <= now:
        return "now"
    return moment.astimezone(zone).strftime("%m-%d %H:%M")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def command(as_json: bool) -> int:
    """Show the health of every monitored agent's schedules, failing first: state, last run,
    next run and reason; the runs going on now; whether the daemon runs.

    Answers from the state files and the run history, so it works whether or not the
    daemon runs. Sees the agents the daemon sees ($DOTAGENT_ROOT, $DOTAGENT_HOME/agents).
    """
    import json

    from dotagent.api.service import status_report
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.paths import Home

    env = invocation_env()
    home = Home.from_env(env)
    report = status_report(home, env, utc_now())
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        return 0
    _render(report, home)
    return 0


def _render(report: Any, home: Any) -> None:
    from dotagent.cli._table import render_table
    from dotagent.display import printable

    zone, now = report.zone, report.now
    out = sys.stdout.write
    out(f"═══ Agent Health · {now.astimezone(zone).strftime('%Y-%m-%d %H:%M')} ═══\n")
    d = report.daemon
    if d.running:
        since = "" if d.since is None else \
            f", since {d.since.astimezone(zone).strftime('%Y-%m-%d %H:%M')}"
        pid = "" if d.pid is None else f"pid {d.pid}"
        out(f"daemon: running ({pid}{since})\n".replace("(, ", "("))
    else:
        out("daemon: not running (the state below is as last recorded)\n")
    counts = report.counts
    if not report.rows:
        out("no agents discovered\n" if not report.problems else "no valid agents\n")
    else:
        parts = [f"{icon} {state} {counts[state]}" + (f"/{counts['total']}"
                                                      if state == "ok" else "")
                 for state, icon in _ICONS]
        from dotagent.cli._table import width

        line = "   ".join(parts)
        # Emoji take two cells: wrap rather than let the terminal do it.
        out((line if len(line) + len(parts) <= width() else "\n".join(parts)) + "\n\n")
        rows = []
        for r in report.rows:
            last = when(r.last_run, zone)
            if r.last_outcome not in (None, "ok"):
                last += f" {r.last_outcome}" + (
                    f" ({r.last_exit_code})" if r.last_exit_code is not None else "")
            marks = " (snoozed)" if r.snoozed_until is not None else ""
            rows.append([f"{r.agent}/{r.schedule}", r.state, last,
                         when(r.next_run, zone, now), r.reason + marks])
        render_table(["AGENT/SCHEDULE", "STATE", "LAST RUN", "NEXT RUN", "REASON"], rows,
                     style_column=1)
    if report.running:
        out("\nRunning now:\n")
        for r in report.running:
            what = r.label or r.agent
            out(f"  {printable(what)} ({r.kind}, pid {r.pid}): {r.age_seconds}s of "
                f"{r.deadline_seconds}s deadline ({r.deadline_pct}%)\n")
    if report.problems:
        out(f"\n{len(report.problems)} manifest problem(s) (see `dotagent doctor`):\n")
        for p in report.problems:
            where = p["path"] + (f":{p['line']}" if p.get("line") else "")
            field = f" {p['field']}:" if p.get("field") else ""
            out(f"  {printable(where)}:{printable(field)} {printable(p['message'])}\n")
    for note in report.notes:
        out(f"note: {printable(note)}\n")
    out(f"\nLogs: {printable(str(home.root / 'logs'))}   State: "
        f"{printable(str(home.state_dir))}   Audit: {printable(str(home.audit_log))}\n")
