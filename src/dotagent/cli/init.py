"""`dotagent init NAME [--dir DIR]`: scaffold a new agent."""

from __future__ import annotations

import sys

import click

__all__ = ["command"]


@click.command("init")
@click.argument("name")
@click.option("--dir", "directory", metavar="DIR", type=click.Path(file_okay=False),
              help="The agent's directory (default: $DOTAGENT_HOME/agents/NAME).")
def command(name: str, directory: str | None) -> int:
    """Create a new agent: a directory with agent.toml and an executable run.sh.

    The manifest passes `dotagent doctor` as it is (a daily schedule at 09:00 and a commented
    [security] section); `dotagent run NAME` runs it. Nothing that exists is overwritten: an
    agent.toml or run.sh already there, or a manifest elsewhere that already claims NAME,
    is refused with exit 73. The new manifest is recorded as known (audited as
    manifest_loaded), so the next run does not report it as a phantom agent.
    """
    import os
    from pathlib import Path

    from dotagent.audit import AuditLog
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.discovery import discover
    from dotagent.display import printable, quote_name
    from dotagent.errors import ExistsError
    from dotagent.manifest import load_manifest
    from dotagent.paths import Home
    from dotagent.scaffold import MANIFEST, SCRIPT, check_name, create_agent
    from dotagent.security.manifests import register_created

    check_name(name)
    env = invocation_env()
    home = Home.from_env(env)
    found = discover(env, include_cwd=False)  # a name the daemon already serves
    holder = found.get(name)
    holder_path = holder.path if holder is not None else None
    broken = found.broken_claim(name)
    if holder_path is None and broken is not None:
        holder_path = broken.path
    if holder_path is not None:
        raise ExistsError(f"not creating agent {quote_name(name)}: "
                          f"{printable(str(holder_path))} already declares that name")
    target = Path(os.path.abspath(os.path.expanduser(directory))) if directory else \
        home.root / "agents" / name
    create_agent(name, target)
    manifest = target / MANIFEST
    loaded = load_manifest(manifest)
    if loaded.manifest is not None:
        register_created(home, name, manifest, loaded.sha256, utc_now(), audit=AuditLog(home))
    out = sys.stdout
    out.write(f"created agent {quote_name(name)} in {printable(str(target))}\n")
    out.write(f"  {MANIFEST}  the manifest: a daily schedule at 09:00, a commented "
              "[security] section\n")
    out.write(f"  {SCRIPT}      the script it runs (executable; edit it)\n")
    roots = {os.path.realpath(r) for r in found.daemon_roots}
    if os.path.realpath(target.parent) not in roots:
        out.write(f"note: {printable(str(target.parent))} is not searched by the daemon "
                  "($DOTAGENT_ROOT, $DOTAGENT_HOME/agents): add it to DOTAGENT_ROOT, or "
                  f"`dotagent run {name}` from {printable(str(target.parent))}\n")
    out.write(f"Next: `dotagent doctor`, then `dotagent run {name}`.\n")
    return 0
