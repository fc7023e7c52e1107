"""`dotagent next [--hours H | -n N] [--json]`: the coming fires, like `systemctl
list-timers`."""

from __future__ import annotations

import sys
from typing import Any

import click

__all__ = ["command"]


@click.command("next")
@click.option("-n", "count", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show the next N fires across all agents (default 10, at most 10000).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="H", help="Show every fire in the next H hours instead.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of fires.")
def command(count: int | None, hours: float | None, as_json: bool) -> int:
    """List the coming fires of every monitored schedule in time order: which schedule,
    when, and how long from now. `due` means it runs as soon as the daemon looks (or would,
    if it ran); `retry`, that a failed attempt is tried again then. Paused schedules have no
    fire while paused.
    """
    import json

    from dotagent.api.service import next_report
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.errors import UsageError
    from dotagent.paths import Home

    if hours is not None and hours != hours:  # NaN passes every comparison of FloatRange
        raise click.BadParameter("'nan' is not a number of hours", param_hint="'--hours'")
    if count is not None and hours is not None:
        raise UsageError("-n and --hours cannot be combined: choose a number of fires or a "
                         "time span")
    env = invocation_env()
    report = next_report(Home.from_env(env), env, utc_now(), count=count, hours=hours)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        _render(report)
    if report.truncated:
        from dotagent.api.upcoming import MAX_FIRES
        from dotagent.cli import _streams

        _streams.say(f"[dotagent] note: only the first {MAX_FIRES} fires are listed\n")
    return 0


def _left(seconds: float) -> str:
    s = int(seconds)
    if s <= 0:
        return "now"
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h left"
    if hours:
        return f"{hours}h {minutes}min left"
    if minutes:
        return f"{minutes}min {secs}s left"
    return f"{secs}s left"


def _render(report: Any) -> None:
    from dotagent.cli._table import render_table

    fires = report.fires
    zone = report.zone
    if not fires:
        sys.stdout.write("no fires coming\n")
        return
    rows = [[f.at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z"), _left(f.in_seconds),
             f.kind, f"{f.agent}/{f.schedule}"] for f in fires]
    render_table(["NEXT", "LEFT", "KIND", "AGENT/SCHEDULE"], rows)
    sys.stdout.write(f"\n{len(fires)} fire(s) listed.\n")
