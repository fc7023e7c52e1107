"""`dotagent inspect NAME [--json]`: one agent in full."""

from __future__ import annotations

import sys
from typing import Any

import click

from dotagent.cli._agents import complete_agent

__all__ = ["command"]


@click.command("inspect")
@click.argument("name", shell_complete=complete_agent)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def command(name: str, as_json: bool) -> int:
    """Show one agent: its manifest (path, sha256, when first seen), its effective policy
    after clamps, and per schedule the expression, the next fires, the heartbeat, the latest
    window and the health; then its last runs.
    """
    import json

    from dotagent.api.service import inspect_report
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.paths import Home

    env = invocation_env()
    report = inspect_report(Home.from_env(env), env, name, utc_now())
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        _render(report.to_json())
    return 0


def _render(data: dict[str, Any]) -> None:
    from dotagent.cli._style import paint
    from dotagent.cli._table import render_table
    from dotagent.display import printable

    def out(text: str) -> None:
        sys.stdout.write(printable(text) + "\n")

    out(f"agent:        {data['agent']}")
    if data["description"]:
        out(f"description:  {data['description']}")
    out(f"manifest:     {data['path']}")
    known = data["known"]
    seen = "never recorded by the daemon" if known is None else (
        f"first seen {known['first_seen']}" + (
            "" if known["matches"] else
            f"; CHANGED since recorded ({str(known['sha256'])[:12]}…)"))
    out(f"sha256:       {data['sha256']} ({seen})")
    monitor = "yes" if data["monitor"] else "no (the daemon neither runs nor watches it)"
    out(f"monitor:      {monitor}")
    out(f"timeout:      {data['timeout_seconds']}s")
    for c in data["clamps"]:
        out(f"clamped:      {c['field']}: {c['declared']} → {c['effective']}")
    for s in data["schedules"]:
        sys.stdout.write("\n" + paint(printable(f"─── schedule '{s['id']}' (slug={s['slug']}) ───"),
                                      "cyan", bold=True) + "\n")
        zone = f" ({s['timezone']})" if s["timezone"] else ""
        out(f"  {s['type']}: {s['expression']}{zone}")
        p = s["policy"]
        out(f"  policy: max_retries {p['max_retries']}, backoff {p['retry_backoff_minutes']} "
            f"min, stale after {p['stale_after_minutes']} min"
            + (f", fixed delay {p['delay_seconds']}s of jitter {p['jitter_seconds']}s"
               if p["jitter_seconds"] else "")
            + (f", success exits {p['success_exit_codes']}" if p["success_exit_codes"] else "")
            + (f", never retried {p['no_retry_exit_codes']}" if p["no_retry_exit_codes"] else ""))
        if s["state"] is not None:
            out(f"  health: {s['state']} — {s['reason']}")
        if s["paused"]:
            out(f"  paused: since {s['paused']['since']}, until "
                f"{s['paused']['until'] or 'resumed'}")
        if s["snoozed_until"]:
            out(f"  alerts snoozed until {s['snoozed_until']}")
        fires = ", ".join(f"{f['at']}" + ("" if f["kind"] == "window" else f" ({f['kind']})")
                          for f in s["next_fires"]) or "none"
        out(f"  next fires: {fires}")
        w = s["window"]
        if w is None:
            out("  window: (none recorded)")
        else:
            what = "missed (never run)" if w["missed"] else (
                f"{w['attempts']} attempt(s), last exit {w['last_exit_code']}"
                + (", given up" if w["given_up"] else ""))
            out(f"  window: {w['expected_at']}: {what}")
        hb = s["heartbeat"]
        if hb is None:
            out("  heartbeat: (no heartbeat)")
        else:
            out(f"  heartbeat: started {hb['started_at_iso']}, finished "
                f"{hb['finished_at_iso'] or '(running or crashed)'}, exit {hb['exit_code']}, "
                f"last success {hb['last_success_at_iso'] or 'never'}")
    sys.stdout.write("\n")
    if not data["runs"]:
        out("runs: none recorded")
    else:
        rows = [[str(r["id"]), r["schedule"], r["source"], str(r["started_at"]),
                 "—" if r["duration_seconds"] is None else f"{r['duration_seconds']}s",
                 r["outcome"] + ("" if r["exit_code"] is None else f" (exit {r['exit_code']})")]
                for r in data["runs"]]
        render_table(["RUN", "SCHEDULE", "SOURCE", "STARTED", "TOOK", "OUTCOME"], rows)
    for note in data["notes"]:
        out(f"note: {note}")
