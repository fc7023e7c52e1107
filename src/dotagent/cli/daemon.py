"""`dotagent daemon`: run the scheduler in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

from typing import Any

import click

from dotagent.cli.app import AgentStatusCommand
from dotagent.errors import EX_NOPERM, DotagentError

__all__ = ["command"]


class InstallationChanged(DotagentError):
    # 77 (EX_NOPERM), not 1: a service manager must not restart into the same refusal every
    # few seconds (the unit lists it in RestartPreventExitStatus=, with 78 for a bad config).
    sysexit = EX_NOPERM


def default_log(text: str) -> None:
    """The daemon's messages before its log is configured."""
    from dotagent.cli import _streams

    _streams.say(f"[dotagent daemon] {text}\n")


# The daemon's refusals use the sysexits codes too (a service manager can tell an invalid
# config, 78, from a crash); a second daemon and a self-hash mismatch exit 1.
@click.command("daemon", cls=AgentStatusCommand)
def command() -> int:
    """Fire every schedule of the daemon's agents at its instant, until stopped.

    Sees $DOTAGENT_ROOT and $DOTAGENT_HOME/agents (never the current directory). One daemon
    per home. SIGHUP (or `dotagent reload`) re-reads config.toml and the manifests; manifest
    changes are also seen within a second on their own. SIGTERM/SIGINT stop the running
    agents (TERM, then KILL after the grace), record them, and exit 0. Refuses to start on
    a self-hash mismatch (exit 1) or an invalid config.toml (exit 78).
    """
    import asyncio
    import os

    from dotagent import __version__
    from dotagent.audit import AuditLog, events
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.config import load_config
    from dotagent.daemon.loop import Daemon, logger_log
    from dotagent.daemon.pidfile import DaemonLock
    from dotagent.daemonlog import configure, resolve_level
    from dotagent.localzone import local_zone
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.security import selfhash

    env = invocation_env()
    _cap_malloc_arenas(env)
    home = Home.from_env(env)
    result = load_config(home)
    config = result.require()  # ConfigError: exit 78 (a unit's RestartPreventExitStatus)
    for problem in result.warnings:
        default_log(f"warning: {problem}")
    early = _hold_signals()  # until serve() installs its own handlers
    lock = DaemonLock(home)
    lock.acquire()  # SecondDaemon names the running one
    level, level_note = resolve_level(env, config.logging.level)
    daemon_logging = configure(home.root, level=level, file_format=config.logging.format)
    log = logger_log()
    if level_note:
        log(f"warning: {level_note}")
    try:
        tighten_home(home)
        audit = AuditLog(home)
        now = utc_now()
        check = selfhash.check(home, audit, now)
        if not check.ok:
            _selfcheck_notice(home, config, env, check.summary(), log)
            raise InstallationChanged(
                f"the installed dotagent differs from the one recorded in "
                f"{home.root / selfhash.HASH_FILE} ({check.summary()}); recorded in the audit "
                "log as selfcheck_failed. After a deliberate upgrade, accept the new "
                "installation with `dotagent selfcheck --record`, then start the daemon again")
        daemon = Daemon(home, config, env=env, zone=local_zone(env), log=log)
        daemon.recover(now)
        daemon.record(events.DaemonStarted(version=__version__, pid=os.getpid()))
        daemon.load_secrets()
        log(f"daemon started (pid {os.getpid()}, home {home.root})")
        if early:  # asked to stop while recovering: the recovery finished, nothing is run
            daemon.stop(early[0])
        try:
            asyncio.run(daemon.serve())
        finally:
            daemon.record(events.DaemonStopped(reason=daemon._stopping or "exited"))
            log("daemon stopped")
    finally:
        daemon_logging.close()
        lock.release()
    return 0


def _selfcheck_notice(home: Any, config: Any, env: dict[str, str], summary: str,
                      log: Any) -> None:
    """The daemon refuses to start on a self-hash mismatch: `[[notifiers]]` hear it first
    (the delivery is waited for, bounded by the notifier's timeout)."""
    from dotagent.alerts.seam import OutboxSender
    from dotagent.alerts.service import Alerts
    from dotagent.audit import AuditLog
    from dotagent.cli._config import load_store
    from dotagent.cli._notify import foreground_outbox
    from dotagent.clock import utc_now
    from dotagent.localzone import local_zone

    audit = AuditLog(home)
    outbox = foreground_outbox(home, audit, env, secrets=load_store(home, env, audit))
    try:
        alerts = Alerts(home, config, OutboxSender(outbox), zone=local_zone(env), log=log)
        alerts.daemon_notice("selfcheck_failed", "🛡️ dotagent: the installed dotagent "
                             f"differs from the recorded one ({summary}); the daemon did not "
                             "start [selfcheck_failed]", utc_now())
    finally:
        outbox.close()


def _hold_signals() -> list[str]:
    """SIGTERM/SIGINT before the loop runs (during the orphan sweep, the crash recovery, the
    secrets load) are remembered instead of killing the daemon half-way: it finishes that
    step, then stops cleanly (`daemon_stopped`, exit 0). A SIGHUP or SIGUSR1 then is a no-op:
    the first scan reads everything anyway (their default action would kill the daemon)."""
    import signal

    asked: list[str] = []

    def remember(signum: int, frame: object) -> None:
        asked.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, remember)
    signal.signal(signal.SIGINT, remember)
    signal.signal(signal.SIGHUP, lambda signum, frame: None)
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)  # `pause`: the same
    return asked


def _cap_malloc_arenas(env: dict[str, str]) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
    each keeps the memory it once held: the run workers would grow the daemon's RSS by some
    megabytes with nothing leaking. Two arenas are plenty for threads that mostly wait on
    their agent. MALLOC_ARENA_MAX in the environment, if set, is left to glibc."""
    if "MALLOC_ARENA_MAX" in env:
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to cap
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(-8, 2)  # M_ARENA_MAX
