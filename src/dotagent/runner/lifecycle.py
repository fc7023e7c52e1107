"""The one run lifecycle (ARCHITECTURE rule 2): every entry point that runs an agent — `run`,
`run-now`, `tick`, the daemon, later the socket API and MCP — builds a `RunRequest` and calls
`execute`. They differ only in the request (which hooks, whether window state is written, the
source recorded in history, stdin).

    agent lock → preflight → history begin → heartbeat start → spawn → heartbeat finish →
    audit → sinks / failure hooks → notifiers → window update → history finish

Failures around the run (audit, history, hooks, notifiers, window file) are reported through
`deps.say` and kept in the report; they never change the run's outcome or exit code.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dotagent.audit import events
from dotagent.clock import from_epoch
from dotagent.display import quote_name
from dotagent.errors import DotagentError, StateError
from dotagent.manifest import LoadedManifest, Schedule
from dotagent.paths import Home, safe_component
from dotagent.private import open_private, private_mkdir
from dotagent.runner.foreground import RunOutcome, audit_events, run_schedule
from dotagent.runner.process import StopRequest, Stream
from dotagent.schedule.windows import Policy, WindowState

if TYPE_CHECKING:
    from dotagent.audit import AuditLog
    from dotagent.state.history import History
    from dotagent.state.windows import WindowStore

__all__ = [
    "AgentBusy",
    "Hooks",
    "NoHooks",
    "Notifier",
    "PreflightFailure",
    "RunDeps",
    "RunEvent",
    "RunReport",
    "RunRequest",
    "agent_lock",
    "execute",
]

Source = Literal["run", "run-now", "tick", "daemon"]
STDERR_TAIL_FOR_WINDOW = 4096


@dataclass(frozen=True)
class PreflightFailure:
    plugin: str
    suggest: str | None = None


@dataclass(frozen=True)
class RunEvent:
    """What hooks and notifiers are told about (S3.5's events)."""

    kind: Literal["preflight", "success", "attempt_failed", "timed_out", "recovered",
                  "given_up"]
    agent: str
    schedule: str
    message: str
    report: RunReport


class Hooks(Protocol):
    """Preflight, sink and failure plugins (filled by the plugins issue).

    `preflight` returns None to let the run go on. `after` is called with the run's events;
    it must never raise: plugin failures are its own audit events."""

    def preflight(self, request: RunRequest) -> PreflightFailure | None: ...

    def after(self, request: RunRequest, event: RunEvent) -> None: ...


class Notifier(Protocol):
    """An out-of-band channel. `notify` must never raise and must bound its own time. A
    notifier may also have `started(agent, schedule)`, called when the agent's process is
    running; it must return at once."""

    def notify(self, event: RunEvent) -> None: ...


class NoHooks:
    def preflight(self, request: RunRequest) -> PreflightFailure | None:
        return None

    def after(self, request: RunRequest, event: RunEvent) -> None:
        return None


@dataclass(frozen=True)
class RunRequest:
    loaded: LoadedManifest
    schedule: Schedule
    source: Source
    dry_run: bool = False
    # Window bookkeeping (daemon, tick): the window being attempted, as recorded before this
    # attempt, and the policy that says when to give up.
    window: WindowState | None = None
    policy: Policy | None = None
    hooks: bool = True  # preflight, sinks, on_failure, notifiers (not for `run`, S3.7)
    stdin_devnull: bool = False
    echo: Callable[[Stream, bytes], None] | None = None
    stop: StopRequest | None = None
    wait_for_lock: bool = False
    # The daemon hands a run over just before its instant (epoch seconds): everything is
    # prepared at once and the agent spawned at that instant; the run's recorded start is
    # never earlier than it.
    not_before: float | None = None

    @property
    def agent(self) -> str:
        return self.loaded.manifest.agent.name


@dataclass
class RunDeps:
    home: Home
    audit: AuditLog
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], float] = time.time
    history: History | None = None
    windows: WindowStore | None = None
    hooks: Hooks = field(default_factory=NoHooks)
    notifiers: Sequence[Notifier] = ()
    say: Callable[[str], None] = lambda text: None
    # Called with (request, pid, argv, executable) once the agent runs, and with
    # (request, pid) when it has ended: the daemon's live registry (supervisor.json).
    on_spawn: Callable[[RunRequest, int, list[str], str], None] | None = None
    on_exit: Callable[[RunRequest, int], None] | None = None
    grace: float | None = None
    # [logging] agent_log_max_mb / agent_log_keep (None: the defaults, 10 MiB × 5)
    log_limits: tuple[int, int] | None = None
    # The loaded secrets store (`dotagent.secrets.SecretStore`, or any mapping): the agent's
    # environment gets the values its `[env] secrets` names, and nothing else of it.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # config.toml `[security] enforcement`: "enforce" refuses a run whose `[security]` cannot
    # be enforced (or whose command is not allowed); "warn" records it and runs unconfined.
    enforcement: str = "enforce"


@dataclass(frozen=True)
class RunReport:
    request: RunRequest
    outcome: RunOutcome | None  # None: the agent did not run (preflight refused)
    preflight: PreflightFailure | None = None
    history_id: int | None = None
    window: WindowState | None = None  # after this attempt
    window_saved: bool = False  # `window` is in its file (False: the disk refused it)
    recovered: bool = False
    given_up: bool = False
    wall_seconds: float = 0.0
    problems: tuple[str, ...] = ()  # what went wrong around the run (not the agent's fault)

    @property
    def ran(self) -> bool:
        return self.outcome is not None

    @property
    def ok(self) -> bool:
        return self.outcome is not None and self.outcome.ok

    @property
    def exit_code(self) -> int:
        return -1 if self.outcome is None else self.outcome.exit_code

    def to_json(self) -> dict[str, Any]:
        """`run-now --json`'s shape (SPEC S10)."""
        req = self.request
        result: dict[str, Any]
        if self.outcome is None:
            assert self.preflight is not None
            result = {"kind": "preflight_failed", "plugin": self.preflight.plugin,
                      "suggest": self.preflight.suggest}
        else:
            o = self.outcome
            result = {"kind": "ran", "exit_code": o.exit_code, "timed_out": o.timed_out,
                      "duration_seconds": round(o.duration_seconds, 3),
                      "stdout_tail": o.stdout_tail, "stderr_tail": o.stderr_tail,
                      "stdout_truncated_lines": o.stdout_dropped,
                      "stderr_truncated_lines": o.stderr_dropped,
                      "limit": o.limit, "output_cut": o.output_cut}
        return {"agent": req.agent, "schedule": req.schedule.id,
                "wall_duration_seconds": round(self.wall_seconds, 3), "result": result}


class AgentBusy(DotagentError):
    """Another process is running this agent (S14.4: one run per agent at a time)."""

    exit_code = 1
    sysexit = 75  # EX_TEMPFAIL: try again later


# --------------------------------------------------------------------------------------
# The agent lock
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def agent_lock(home: Home, agent: str, *, wait: bool = False) -> Iterator[None]:
    """Hold `state/locks/<name>.run.lock` for the whole run. Never deleted (filelock's
    rule). The holder's pid is written into it so that a refusal can say who runs it."""
    path = home.join("state", "locks", f"{safe_component(agent, 'agent name')}.run.lock")
    try:
        private_mkdir(path.parent)
        fd = open_private(path, os.O_RDWR)
    except OSError as exc:
        raise StateError(f"cannot open the run lock {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise AgentBusy(f"agent {quote_name(agent)} is already running{who}; one run per "
                            "agent at a time") from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# execute
# --------------------------------------------------------------------------------------
def execute(request: RunRequest, deps: RunDeps) -> RunReport:
    """Run one attempt of one schedule through every step; see the module docstring.

    Raises AgentBusy when the agent already runs elsewhere, and the DotagentErrors of a run
    that cannot begin (its log or heartbeat cannot be written); once the agent has started,
    nothing raises: the run is finished and recorded."""
    started_wall = time.monotonic()
    with agent_lock(deps.home, request.agent, wait=request.wait_for_lock):
        return _execute(request, deps, started_wall)


def _execute(request: RunRequest, deps: RunDeps, started_wall: float) -> RunReport:
    problems: list[str] = []
    agent, sched = request.agent, request.schedule

    def record(event: events.Event, severity: events.Severity | None = None) -> None:
        try:
            deps.audit.append(event, severity=severity)
        except (OSError, DotagentError) as exc:
            problems.append(f"could not record {event.event_type} in the audit log: {exc}")

    if request.hooks and not request.dry_run:
        failure = deps.hooks.preflight(request)
        if failure is not None:
            record(events.PreflightFailed(agent=agent, schedule=sched.id, plugin=failure.plugin,
                                          suggest=failure.suggest))
            report = RunReport(request, None, preflight=failure,
                               wall_seconds=time.monotonic() - started_wall,
                               problems=tuple(problems))
            message = f"preflight aborted by plugin {failure.plugin}" + (
                f": {failure.suggest}" if failure.suggest else "")
            _fan_out(request, deps, RunEvent("preflight", agent, sched.id, message, report),
                     problems)
            # A preflight refusal is an attempt that did not run: the window is untouched
            # (it does not burn a retry), and history keeps a row for it.
            refused_id = _history_row(request, deps, problems, started=deps.clock(),
                                      outcome="preflight_failed")
            return replace(report, history_id=refused_id, problems=tuple(problems))

    history_id: int | None = None
    log_at: dict[str, Any] = {}

    def log_start(path: Path, offset: int) -> None:
        started = max(deps.clock(), request.not_before or 0.0)
        log_at.update(path=path, offset=offset, started=started)
        nonlocal history_id
        history_id = _history_begin(request, deps, problems, path, offset, started=started)

    def spawned(pid: int, argv: list[str], executable: str) -> None:
        if deps.on_spawn is not None:
            deps.on_spawn(request, pid, argv, executable)
        log_at["pid"] = pid
        if request.hooks and not request.dry_run:
            _started(deps, agent, sched.id, problems)

    try:
        outcome = run_schedule(
            request.loaded, sched, home=deps.home, dry_run=request.dry_run, echo=request.echo,
            parent_env=deps.env, clock=deps.clock, grace=deps.grace, stop=request.stop,
            stdin_devnull=request.stdin_devnull, on_spawn=spawned, on_log_start=log_start,
            log_limits=deps.log_limits, not_before=request.not_before,
            stdout_spool=request.hooks and not request.dry_run
            and bool(request.loaded.manifest.on_success),
            secrets=deps.secrets, enforcement=deps.enforcement)
    finally:
        if deps.on_exit is not None and "pid" in log_at:
            deps.on_exit(request, log_at["pid"])
    try:
        return _after_run(request, deps, outcome, problems, record, history_id, log_at,
                          started_wall)
    finally:
        if outcome.stdout_spool is not None:
            outcome.stdout_spool.close()


def _after_run(request: RunRequest, deps: RunDeps, outcome: RunOutcome, problems: list[str],
               record: Callable[..., None], history_id: int | None,
               log_at: dict[str, Any], started_wall: float) -> RunReport:
    agent, sched = request.agent, request.schedule
    for problem in (outcome.log_error, outcome.heartbeat_error):
        if problem is not None:
            problems.append(problem)
    for event, severity in audit_events(outcome):
        record(event, severity)

    report = RunReport(request, outcome, history_id=history_id)
    kind: Literal["success", "attempt_failed", "timed_out"]
    if outcome.ok:
        kind, message = "success", outcome.stdout_tail
    else:
        kind = "timed_out" if outcome.timed_out else "attempt_failed"
        tail = outcome.stderr_tail
        message = (f"{agent} exited {outcome.exit_code}\n{tail}" if tail
                   else f"{agent} exited {outcome.exit_code} (tail empty)")
        if outcome.start_error is not None:  # e.g. refused by [security]: say why
            message = f"{agent} could not start (exit {outcome.exit_code}): " \
                      f"{outcome.start_error}"
    if request.hooks and not request.dry_run:
        _fan_out(request, deps, RunEvent(kind, agent, sched.id, message, report), problems)

    window, saved, recovered, given_up = _update_window(request, deps, outcome, record,
                                                        problems)
    report = replace(report, window=window, window_saved=saved, recovered=recovered,
                     given_up=given_up)
    if request.hooks and not request.dry_run:
        if recovered:
            _fan_out(request, deps, RunEvent(
                "recovered", agent, sched.id,
                f"agent {agent} recovered on attempt {window.attempts if window else 1}",
                report), problems)
        elif given_up:
            _fan_out(request, deps, RunEvent(
                "given_up", agent, sched.id,
                f"🚨 {agent}/{sched.id} gave up after {window.attempts if window else 1} "
                f"attempts (exit {outcome.exit_code})\n{outcome.stderr_tail}", report),
                problems)
    _history_finish(deps, history_id, outcome, problems, log_at)
    for problem in problems:
        deps.say(f"[dotagent] error: agent {quote_name(agent)}, schedule "
                 f"{quote_name(sched.id)}: {problem}\n")
    return replace(report, wall_seconds=time.monotonic() - started_wall,
                   problems=tuple(problems))


def _started(deps: RunDeps, agent: str, schedule: str, problems: list[str]) -> None:
    """The agent is running: notifiers that report starts (a `ping` check's `/start`) hear
    it. A notifier's `started` must return at once (it delivers in the background)."""
    for notifier in deps.notifiers:
        started = getattr(notifier, "started", None)
        if started is None:
            continue
        try:
            started(agent, schedule)
        except Exception as exc:
            problems.append(f"notifier failed for start: {type(exc).__name__}: {exc}")


def _fan_out(request: RunRequest, deps: RunDeps, event: RunEvent, problems: list[str]) -> None:
    """Hooks, then notifiers: best effort, never changing the outcome (S3.6)."""
    try:
        deps.hooks.after(request, event)
    except Exception as exc:  # a hook runner must not raise; if it does, say so and go on
        problems.append(f"hooks for {event.kind} failed: {type(exc).__name__}: {exc}")
    for notifier in deps.notifiers:
        try:
            notifier.notify(event)
        except Exception as exc:
            problems.append(f"notifier failed for {event.kind}: {type(exc).__name__}: {exc}")


def _update_window(request: RunRequest, deps: RunDeps, outcome: RunOutcome,
                   record: Callable[[events.Event], None], problems: list[str]
                   ) -> tuple[WindowState | None, bool, bool, bool]:
    """attempts + 1, the attempt's start and exit; recovered / given up (S2.5 step 6).
    Returns the window after the attempt, whether its file was written, recovered, given
    up."""
    before = request.window
    if before is None or request.dry_run or deps.windows is None:
        return None, False, False, False
    policy = request.policy
    attempts = before.attempts + 1
    succeeded = outcome.ok
    # Not retried: the attempts are used up, or the status is one of no_retry_exit_codes.
    no_retry = (not succeeded and policy is not None
                and not policy.exits.retry_allowed(outcome.exit_code))
    given_up = (not succeeded and policy is not None
                and (attempts >= policy.max_attempts or no_retry))
    after = WindowState(expected_at=before.expected_at, attempts=attempts,
                        last_attempt_at=from_epoch(outcome.started_at),
                        last_exit_code=outcome.exit_code, given_up=given_up)
    recovered = succeeded and attempts > 1
    agent, sched = request.agent, request.schedule
    if recovered:
        record(events.AgentRecovered(agent=agent, schedule=sched.id, attempts=attempts))
    if given_up:
        record(events.AgentGivenUp(agent=agent, schedule=sched.id, attempts=attempts,
                                   last_exit=outcome.exit_code,
                                   stderr_tail=outcome.stderr_tail[-STDERR_TAIL_FOR_WINDOW:],
                                   reason=events.no_retry_reason(outcome.exit_code)
                                   if no_retry else ""))
    try:
        deps.windows.save(agent, sched.slug, sched.id, after,
                          stderr=outcome.stderr_tail[-STDERR_TAIL_FOR_WINDOW:] or None,
                          given_up_at=from_epoch(outcome.finished_at) if given_up else None)
    except DotagentError as exc:
        problems.append(exc.message)
        return after, False, recovered, given_up
    return after, True, recovered, given_up


def _history_begin(request: RunRequest, deps: RunDeps, problems: list[str],
                   log_path: Path | None, offset: int | None, *,
                   started: float | None = None) -> int | None:
    if deps.history is None or request.dry_run:
        return None
    window = request.window
    if started is None:
        started = max(deps.clock(), request.not_before or 0.0)
    try:
        return deps.history.begin(
            agent=request.agent, schedule=request.schedule.id, slug=request.schedule.slug,
            source=request.source, started_at=started,
            attempt=(window.attempts + 1) if window is not None else 1,
            window=window.expected_at.timestamp() if window is not None else None,
            manifest_sha256=request.loaded.sha256, log_path=log_path, log_start=offset)
    except DotagentError as exc:
        problems.append(exc.message)
        return None


def _history_row(request: RunRequest, deps: RunDeps, problems: list[str], *, started: float,
                 outcome: str) -> int | None:
    run_id = _history_begin(request, deps, problems, None, None)
    if run_id is not None and deps.history is not None:
        try:
            deps.history.finish(run_id, finished_at=started, exit_code=None, outcome=outcome)
        except DotagentError as exc:
            problems.append(exc.message)
    return run_id


def _history_finish(deps: RunDeps, history_id: int | None, outcome: RunOutcome,
                    problems: list[str], log_at: Mapping[str, Any]) -> None:
    if history_id is None or deps.history is None:
        return
    # The verdict is the outcome's (`ok` applies the success_exit_codes); history only
    # stores it.
    result = "timed_out" if outcome.timed_out else "ok" if outcome.ok else "failed"
    if outcome.interrupted_by is not None:
        result = "interrupted"
    elif outcome.start_error is not None:
        result = "could_not_start"
    log_end: int | None = None
    if "path" in log_at:
        with contextlib.suppress(OSError):
            log_end = os.path.getsize(log_at["path"])
    # The outcome's own finish is in whole seconds (heartbeats and windows keep upstream's
    # integers); history keeps the measured duration, so `history --stats` and the duration
    # anomaly see sub-second runs as they were.
    finished_at = float(outcome.finished_at)
    if "started" in log_at:
        finished_at = log_at["started"] + max(0.0, outcome.duration_seconds)
    try:
        deps.history.finish(history_id, finished_at=finished_at,
                            exit_code=outcome.exit_code, timed_out=outcome.timed_out,
                            outcome=result, stderr_tail=outcome.stderr_tail, log_end=log_end)
    except DotagentError as exc:
        problems.append(exc.message)


def interrupted_label(outcome: RunOutcome) -> str | None:
    if outcome.interrupted_by is None:
        return None
    return signal.Signals(outcome.interrupted_by).name
