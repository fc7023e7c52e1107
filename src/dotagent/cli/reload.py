"""`dotagent reload`: ask the running daemon to re-read its manifests and config.toml."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("reload")
def command() -> int:
    """Send SIGHUP to the daemon serving this home (as `kill -HUP $(cat state/daemon.pid)`,
    but never to a pid left behind by a daemon that is gone)."""
    import os
    import signal

    from dotagent.cli.app import invocation_env
    from dotagent.daemon.pidfile import running_daemon
    from dotagent.errors import DotagentError
    from dotagent.paths import Home

    env = invocation_env()
    home = Home.from_env(env)
    pid = running_daemon(home)
    if pid is None:
        raise DotagentError(f"no dotagent daemon is running for {home.root} (start one with "
                            "`dotagent daemon`; it reads the manifests when it starts)")
    if pid == 0:
        raise DotagentError(f"a daemon holds {home.state_dir / 'daemon.lock'} but "
                            f"{home.state_dir / 'daemon.pid'} is missing or garbled")
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise DotagentError(f"cannot send SIGHUP to the daemon (pid {pid}): "
                            f"{exc.strerror or exc}") from exc
    click.echo(f"sent SIGHUP to dotagent daemon (pid={pid})")
    return 0
