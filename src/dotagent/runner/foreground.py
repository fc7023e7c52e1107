"""One run of one schedule, from start heartbeat to finish heartbeat (SPEC S3, S14.18).

Used by `dotagent run`; the daemon builds its dispatch on the same pieces.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotagent import redaction
from dotagent.audit import events
from dotagent.errors import DotagentError
from dotagent.manifest import LoadedManifest, Schedule
from dotagent.paths import Home
from dotagent.runner import limits as run_limits
from dotagent.runner.confine import confine
from dotagent.runner.output import OutputCollector, StdoutSpool, open_run_log
from dotagent.runner.process import (
    EXIT_CANNOT_EXECUTE,
    GRACE_SECONDS,
    SpawnError,
    StopRequest,
    Stream,
    supervise,
)
from dotagent.runner.spawn import RunContext, build_env, resolve_command
from dotagent.state.heartbeat import HeartbeatStore
from dotagent.timefmt import iso_local

__all__ = ["RunOutcome", "audit_events", "run_schedule"]


@dataclass(frozen=True)
class RunOutcome:
    agent: str
    schedule: str
    slug: str
    dry_run: bool
    exit_code: int
    # The exit status counts as a success under the agent's `[run]` policy: the one test,
    # `ExitPolicy.succeeded`, applied once here; everything after the run reads this.
    ok: bool
    timed_out: bool
    duration_seconds: float
    started_at: int
    finished_at: int
    stdout_tail: str
    stderr_tail: str
    stdout_dropped: int
    stderr_dropped: int
    start_error: str | None  # set when the command could not be started
    manifest_sha256: str
    interrupted_by: int | None = None  # signal that made dotagent stop the agent
    # What went wrong around a run that happened (it is still recorded; the exit code stays
    # the agent's): the per-agent log, the finish heartbeat, the echo of each stream.
    log_error: str | None = None
    heartbeat_error: str | None = None
    echo_errors: tuple[tuple[str, str], ...] = ()
    # The whole stdout for the sinks (only when asked for, `stdout_spool=True`); whoever
    # asked closes it (runner.lifecycle does, after the sinks ran).
    stdout_spool: StdoutSpool | None = None
    # What `[security]` made of the run: command_not_allowed / sandbox_unavailable, with the
    # severity to record them at (runner.confine); "bwrap" when it ran confined.
    security_events: tuple[tuple[events.Event, events.Severity], ...] = ()
    sandbox: str = "none"
    # `[limits]`: the limit that most likely ended the run (one line, also the last line of
    # `stderr_tail`), and whether the log was cut at `max_output_mb`.
    limit: str | None = None
    output_cut: bool = False


def run_schedule(
    loaded: LoadedManifest,
    schedule: Schedule,
    *,
    home: Home,
    dry_run: bool = False,
    echo: Callable[[Stream, bytes], None] | None = None,
    parent_env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    grace: float | None = None,
    stop: StopRequest | None = None,
    stdin_devnull: bool = False,
    on_spawn: Callable[[int, list[str], str], None] | None = None,
    on_log_start: Callable[[Path, int], None] | None = None,
    log_limits: tuple[int, int] | None = None,
    not_before: float | None = None,
    stdout_spool: bool = False,
    secrets: Mapping[str, str] | None = None,
    enforcement: str = "enforce",
) -> RunOutcome:
    """Heartbeat start → spawn → heartbeat finish, with the per-agent log around it.

    The one caller is `runner.lifecycle.execute`. `on_spawn(pid, argv, executable)` lets the
    caller register the process (supervisor.json); `on_log_start(path, offset)` tells it where
    this run's output begins in the per-agent log. With `not_before` (epoch seconds, on
    `clock`), everything is prepared first and the agent spawned at that instant (waiting
    at most MAX_EARLY seconds: a clock set back meanwhile does not hold the run); the
    recorded start is never earlier than it."""
    manifest = loaded.manifest
    name, slug = manifest.agent.name, schedule.slug
    parent_env = os.environ if parent_env is None else parent_env
    heartbeats = HeartbeatStore(home)
    started_at = int(max(clock(), not_before or 0.0))
    tmpdir = Path(tempfile.mkdtemp(prefix=f"dotagent-{name}-"))
    ctx = RunContext(
        loaded=loaded, schedule=schedule, slug=slug, dry_run=dry_run,
        start_epoch=started_at, tmpdir=tmpdir,
        heartbeat_file=None if dry_run else heartbeats.path(name, slug),
    )
    heartbeat_error: str | None = None
    spool: StdoutSpool | None = None
    try:
        # Refusals (log or heartbeat cannot be written) happen before anything is logged.
        limits = {} if log_limits is None else {"max_bytes": log_limits[0],
                                                 "keep": log_limits[1]}
        with open_run_log(home.agent_log_file(name), **limits) as log:
            if stop is not None:
                stop.commit()  # a stop requested until now abandons the run: nothing ran
            if not dry_run:
                heartbeats.start(name, slug, schedule.args, started_at)
            if on_log_start is not None:
                try:
                    offset = os.path.getsize(log.path)
                except OSError:
                    offset = 0
                on_log_start(log.path, offset)
            log.write(f"\n=== {iso_local(started_at)} run started · schedule={schedule.id} · "
                      f"slug={slug} ===\n".encode())
            lim = manifest.limits
            collector = OutputCollector(
                log, echo=echo, redact=_redact_line,
                max_log_bytes=lim.max_output_mb * 1024 * 1024
                if lim is not None and lim.max_output_mb is not None else None)
            on_output: Callable[[Stream, bytes], None] = collector
            if stdout_spool:
                spool = StdoutSpool()

                def on_output(stream: Stream, chunk: bytes) -> None:
                    if stream == "stdout":
                        spool.write(chunk)
                    collector(stream, chunk)
            start_error: str | None = None
            timed_out = False
            duration = 0.0
            interrupted_by: int | None = None
            security_events: tuple[tuple[events.Event, events.Severity], ...] = ()
            sandbox = "none"
            verdict: run_limits.LimitVerdict | None = None
            try:
                executable = resolve_command(manifest.run.command, loaded.working_dir(),
                                             os.environ.get("PATH"))
                argv = ctx.argv
                confined = confine(loaded, schedule, argv, executable, tmpdir=tmpdir,
                                   heartbeat_file=ctx.heartbeat_file, enforcement=enforcement)
                security_events, sandbox = confined.events, confined.sandbox
                if confined.refused is not None:
                    raise SpawnError(confined.refused, confined.exit_code)

                def spawned(pid: int) -> None:
                    if on_spawn is not None:
                        on_spawn(pid, argv, executable)

                env = build_env(ctx, parent_env, secrets)
                if not_before is not None:
                    _wait_until(not_before, clock, stop)
                # The limits wrapper goes outside bwrap: rlimits and niceness carry across
                # its exec and bwrap's own into the agent.
                spawn_argv, spawn_exe = run_limits.wrap(confined.argv, confined.executable, lim)
                result = supervise(
                    spawn_argv, executable=spawn_exe, cwd=loaded.working_dir(),
                    env=env, timeout=manifest.agent.timeout_seconds,
                    on_output=on_output, grace=GRACE_SECONDS if grace is None else grace,
                    stop=stop, stdin_devnull=stdin_devnull, on_spawn=spawned,
                )
                exit_code, timed_out, duration = result.exit_code, result.timed_out, \
                    result.duration
                interrupted_by = result.interrupted_by
                collector.close()
                returncode = result.returncode
                if sandbox == "bwrap" and returncode > 128:
                    # bwrap reports an agent killed by signal N as exit 128+N
                    returncode = -(returncode - 128)
                verdict = run_limits.limit_reason(
                    lim, returncode=returncode,
                    exit_ok=manifest.exit_policy().succeeded(exit_code),
                    stopped_by_dotagent=timed_out or interrupted_by is not None,
                    stderr_tail=collector.tail("stderr"))
                if verdict is not None:
                    collector.note(f"[dotagent] {verdict.reason}")
            except SpawnError as exc:
                start_error, exit_code = exc.message, exc.exit_code
                collector.note(f"[dotagent] cannot start: {exc.message} (exit {exit_code})")
            except (OSError, ValueError) as exc:
                # Whatever stops the spawn, the run that began is finished and recorded.
                start_error, exit_code = f"cannot start: {exc}", EXIT_CANNOT_EXECUTE
                collector.note(f"[dotagent] {start_error} (exit {exit_code})")
            collector.close()
            if collector.cut:
                collector.note("[dotagent] the output above was cut at [limits] "
                               f"max_output_mb = {lim.max_output_mb if lim else 0}")
            finished_at = max(started_at, int(clock()))
            outcome = "timed out" if timed_out else "finished"
            if interrupted_by is not None:
                outcome = f"interrupted by {signal.Signals(interrupted_by).name}"
            collector.note(f"=== {iso_local(finished_at)} run {outcome} · exit={exit_code} · "
                           f"{duration:.1f}s{' · dry-run' if dry_run else ''} ===")
            succeeded = manifest.exit_policy().succeeded(exit_code)
            if not dry_run:
                try:
                    heartbeats.finish(name, slug, schedule.args, started_at, finished_at,
                                      exit_code, int(duration), succeeded=succeeded)
                except DotagentError as exc:
                    # The agent ran: the run is still recorded, and the caller says this.
                    heartbeat_error = exc.message
    except BaseException:
        if spool is not None:
            spool.close()
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return RunOutcome(
        agent=name, schedule=schedule.id, slug=slug, dry_run=dry_run, exit_code=exit_code,
        ok=succeeded, timed_out=timed_out, duration_seconds=duration, started_at=started_at,
        finished_at=finished_at,
        # Tails go to history, window files, --json, notifiers and sinks: redacted like the log.
        stdout_tail=redaction.redact(collector.tail("stdout")),
        stderr_tail=_with_notes(redaction.redact(collector.tail("stderr")), verdict,
                                collector.cut),
        stdout_dropped=collector.dropped("stdout"),
        stderr_dropped=collector.dropped("stderr"), start_error=start_error,
        manifest_sha256=loaded.sha256, interrupted_by=interrupted_by,
        log_error=log.error, heartbeat_error=heartbeat_error,
        echo_errors=tuple((stream, f"{type(exc).__name__}: {exc}")
                          for stream, exc in collector.echo_errors.items()),
        stdout_spool=spool, security_events=security_events, sandbox=sandbox,
        limit=verdict.reason if verdict is not None else None, output_cut=collector.cut,
    )


def _with_notes(tail: str, verdict: run_limits.LimitVerdict | None, cut: bool) -> str:
    """The stderr tail that history, windows and notifiers keep, with dotagent's own lines
    about limits last: they say why the run ended where the agent's output cannot."""
    notes = []
    if cut:
        notes.append("[dotagent] output cut in the log at [limits] max_output_mb")
    if verdict is not None:
        notes.append(f"[dotagent] {verdict.reason}")
    return "\n".join([tail, *notes] if tail else notes)


MAX_EARLY = 1.0


def _wait_until(at: float, clock: Callable[[], float], stop: StopRequest | None) -> None:
    """Sleep until `at` on `clock` (at most MAX_EARLY s); a stop request ends it early (the
    supervisor then stops the agent the usual way)."""
    delay = min(at - clock(), MAX_EARLY)
    if delay <= 0:
        return
    if stop is not None:
        select.select([stop.fileno()], [], [], delay)
    else:
        time.sleep(delay)


def audit_events(outcome: RunOutcome) -> list[tuple[events.Event, events.Severity | None]]:
    """What a finished run leaves in the audit log, each with the severity to record it at
    (None: the event's own): `run_interrupted` when dotagent was told to stop it, then
    `agent_run` with the manifest hash it ran — notice when the run succeeded (exit 0 or one
    of `success_exit_codes`), critical otherwise. Before them, what `[security]` refused or
    let through under "warn" (`command_not_allowed`, `sandbox_unavailable`)."""
    out: list[tuple[events.Event, events.Severity | None]] = list(outcome.security_events)
    if outcome.interrupted_by is not None:
        signame = signal.Signals(outcome.interrupted_by).name
        out.append((events.RunInterrupted(
            agent=outcome.agent, schedule=outcome.schedule,
            reason=f"{signame} received; the agent was stopped (exit {outcome.exit_code})"),
            None))
    out.append((events.AgentRun(
        agent=outcome.agent, schedule=outcome.schedule, slug=outcome.slug,
        manifest_sha256=outcome.manifest_sha256, exit_code=outcome.exit_code,
        duration_seconds=int(outcome.duration_seconds), timed_out=outcome.timed_out,
        dry_run=outcome.dry_run, limit=outcome.limit or "", output_cut=outcome.output_cut),
        events.Severity.NOTICE if outcome.ok else events.Severity.CRITICAL))
    return out


def _redact_line(line: bytes) -> bytes:
    """Secret values registered by the secrets store never reach the per-agent log."""
    # Invalid UTF-8 becomes U+FFFD: the log stays valid text (one bad byte must not make a
    # whole run unreadable, as upstream's all-or-nothing decoding did).
    return redaction.redact(line.decode("utf-8", errors="replace")).encode("utf-8")
