"""`dotagent install [--dry-run] [--force]` / `dotagent uninstall`: the daemon's unit file."""

from __future__ import annotations

import sys
from typing import Any

import click

from dotagent.cli import _streams

__all__ = ["install_command", "uninstall_command"]

_MANAGER_HELP = ("systemd (a user unit) or launchd (a LaunchAgent); default: the one of "
                 "this platform. The other is mainly useful with --dry-run.")


def _target(manager: str | None) -> tuple[Any, Any, dict[str, str]]:
    from typing import cast

    from dotagent.cli.app import invocation_env
    from dotagent.daemon.install import Manager, default_manager, unit_path

    env = invocation_env()
    chosen = default_manager() if manager is None else cast(Manager, manager)
    return chosen, unit_path(chosen, env), env


def _linger_lines(linger: Any) -> None:
    user = linger.user
    if linger.state == "no":
        _streams.say(
            f"[dotagent] warning: lingering is off for user {user}: systemd stops your user "
            "services when you log out, and does not start them at boot until you log in "
            "(on a headless machine: never). Fix: loginctl enable-linger "
            f"{user}  (may need sudo)\n")
    elif linger.state == "unknown":
        _streams.say(
            f"[dotagent] note: could not check whether lingering is on for user {user} "
            f"({linger.detail}); without it the daemon stops at logout. To be sure: "
            f"loginctl show-user {user} -p Linger (fix: loginctl enable-linger {user})\n")


@click.command("install")
@click.option("--dry-run", is_flag=True, help="Print the unit and where it would go; write "
              "nothing.")
@click.option("--force", is_flag=True, help="Replace a file at the unit's path that dotagent "
              "did not write.")
@click.option("--manager", type=click.Choice(["systemd", "launchd"]), help=_MANAGER_HELP)
def install_command(dry_run: bool, force: bool, manager: str | None) -> int:
    """Install the daemon as a per-user service (systemd on Linux, launchd on macOS).

    Writes ~/.config/systemd/user/run.avelino.dotagent.service (or
    ~/Library/LaunchAgents/run.avelino.dotagent.plist) running this dotagent's `daemon`
    with DOTAGENT_HOME set, and prints the command that starts it. Runs nothing itself.
    The same unit already there: nothing is written. A file there that dotagent did not
    write is left alone (exit 73) unless --force.
    """
    from dotagent.daemon.install import check_linger, daemon_argv, install, unit_spec
    from dotagent.display import printable
    from dotagent.paths import Home

    chosen, path, env = _target(manager)
    home = Home.from_env(env)
    spec = unit_spec(home, env, daemon_argv(env=env))
    report = install(chosen, path, spec, force=force, dry_run=dry_run)
    shown = printable(str(path))
    out = sys.stdout
    if dry_run:
        verb = {"created": "would write", "updated": "would update",
                "replaced": "would replace (--force)", "unchanged": "already installed:"}
        out.write(f"{verb[report.action]} {shown} (--dry-run: nothing written)\n")
        if report.action != "unchanged":
            out.write(report.content.decode())
    else:
        verb = {"created": "wrote", "updated": "updated", "replaced": "replaced (--force)",
                "unchanged": "already installed, unchanged:"}
        out.write(f"{verb[report.action]} {shown}\n")
    out.write(f"  runs: {printable(' '.join(spec.argv))}\n")
    for name, value in spec.environment.items():
        out.write(f"  {name}={printable(value)}\n")
    out.write(f"  logs: {printable(str(spec.stdout_log))}, {printable(spec.stderr_log.name)}\n")
    if chosen == "systemd":
        _linger_lines(check_linger(env))
    out.write("Next steps:\n" if not dry_run else "Then:\n")
    for step in report.next_steps:
        out.write(f"  {step}\n")
    return 0


@click.command("uninstall")
@click.option("--manager", type=click.Choice(["systemd", "launchd"]), help=_MANAGER_HELP)
def uninstall_command(manager: str | None) -> int:
    """Remove the daemon's unit file, if dotagent wrote it.

    Does not stop the daemon: it prints the command that does. A file at the unit's path
    that dotagent did not write is never removed (exit 1).
    """
    from dotagent.daemon.install import uninstall
    from dotagent.display import printable

    chosen, path, _env = _target(manager)
    report = uninstall(chosen, path)
    shown = printable(str(path))
    out = sys.stdout
    if not report.removed:
        out.write(f"nothing to remove (daemon unit not found: {shown})\n")
        return 0
    out.write("To stop and disable the daemon, run (dotagent runs no service-manager "
              "command itself):\n")
    for step in report.before:
        out.write(f"  {step}\n")
    out.write(f"removed {shown}\n")
    if report.after:
        out.write("Then:\n")
        for step in report.after:
            out.write(f"  {step}\n")
    return 0
