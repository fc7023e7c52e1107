"""`dotagent doctor [--posture] [--json]`."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["command"]


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option("--posture", is_flag=True,
              help="Also check the host: disk encryption, SSH keys, firewall, backups.")
def command(as_json: bool, posture: bool) -> int:
    """Check every discoverable manifest without running anything.

    Exit status 0 when there are no errors (warnings allowed), 1 otherwise. Posture
    findings are warnings: they never change the exit status.
    """
    from dotagent.cli._style import paint
    from dotagent.cli.app import invocation_env
    from dotagent.display import printable
    from dotagent.doctor import run_doctor
    from dotagent.paths import resolve_home

    env = invocation_env()
    home = resolve_home(env)
    report = run_doctor(home, env)
    host_report = None
    if posture:
        from dotagent.posture import Host, run_posture
        host_report = run_posture(Host(dict(env)), home)
    if as_json:
        data = report.to_json()
        if host_report is not None:
            data["posture"] = host_report.to_json()
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return 0 if report.error_count == 0 else 1

    out = []
    out.append(f"home: {printable(str(report.home))}")
    out.append("searched: " + ", ".join(printable(str(r)) for r in report.roots))
    for p in report.general:
        word = paint("error", "red") if p.severity == "error" else paint("warning", "yellow")
        out.append(f"{word}: {p}")
    if not report.manifests:
        out.append("no agents discovered (put agent.toml files in one of the searched "
                   "directories)")
    for m in report.manifests:
        mark = {"ok": paint("✓", "green"), "warnings": paint("!", "yellow"),
                "errors": paint("✗", "red")}[m.status]
        verdict = {"ok": "manifest ok", "warnings": "manifest ok, with warnings",
                   "errors": "manifest has errors"}[m.status]
        out.append(f"{mark} {m.label}: {verdict} ({printable(str(m.path))})")
        for note in m.notes:
            out.append(f"    {note}")
        # By line, errors and warnings together (file-level ones first; sort is stable, so
        # errors come before warnings on the same line).
        for p in sorted([*m.errors, *m.warnings], key=lambda p: p.sort_key()):
            word = paint("error", "red") if p.severity == "error" else \
                paint("warning", "yellow")
            out.append(f"    {word}: {p}")
    out.extend(f"note: {note}" for note in report.notes)
    if host_report is not None:
        out.append("posture (best-effort advice about this host, not enforced):")
        for c in host_report.checks:
            mark = {"ok": paint("✓", "green"), "warning": paint("!", "yellow"),
                    "unknown": paint("?", "yellow")}[c.status]
            out.append(f"{mark} {c.id}: {c.status}: {printable(c.detail)}")
            if c.fix:
                out.append(f"    fix: {c.fix}")
    out.append(f"summary: {report.agent_count} agent(s), {report.error_count} error(s), "
               f"{report.warning_count} warning(s)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0 if report.error_count == 0 else 1
