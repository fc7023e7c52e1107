"""Applying an agent's `[security]` section to one spawn (issue 11 items 1 and 3).

    allowed_commands → checked here, before anything starts (no sandbox needed)
    env_passthrough  → applied by `runner.spawn.build_env` (no sandbox needed)
    network, filesystem_writable → the command runs inside the sandbox (bwrap)

Fail closed: under `[security] enforcement = "enforce"` (the default) a restriction that
cannot be enforced here refuses the run — `sandbox_unavailable`, critical — and a command
outside `allowed_commands` refuses it too (`command_not_allowed`, critical). Under `"warn"`
the same events are recorded at notice severity with `refused = false`, every run, and the
command runs unconfined.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dotagent.audit import events
from dotagent.manifest import LoadedManifest, Schedule, expand_user
from dotagent.sandbox import Policy, Sandbox, select_sandbox

__all__ = ["EXIT_NOT_ALLOWED", "EXIT_SANDBOX_UNAVAILABLE", "Confinement", "command_allowed",
           "confine", "unenforceable"]

EXIT_NOT_ALLOWED = 77  # sysexits EX_NOPERM
EXIT_SANDBOX_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE
HOSTS_NOT_YET = ("network host allowlists ([security] network = [...]) cannot be enforced "
                 "yet: dotagent has no filtering proxy")

Audited = tuple[events.Event, events.Severity]


@dataclass(frozen=True)
class Confinement:
    argv: list[str]
    executable: str
    sandbox: str  # "bwrap" or "none"
    refused: str | None = None  # the reason the run must not start
    exit_code: int = 0
    events: tuple[Audited, ...] = field(default=())


def command_allowed(allowed: Sequence[str], command: str, executable: str) -> bool:
    """`[run].command` as written, or the absolute path it was found at (not a symlink's
    target), is one of the entries (`~` in an entry is expanded)."""
    for entry in allowed:
        if entry == command or entry == executable:
            return True
        if entry.startswith("~") and str(expand_user(entry)) == executable:
            return True
    return False


def unenforceable(policy: Policy, sandbox: Sandbox) -> str | None:
    """Why this policy cannot be enforced here (None: it can, or nothing needs enforcing)."""
    if not policy.confines:
        return None
    if policy.hosts:
        return HOSTS_NOT_YET
    return sandbox.unavailable()


def confine(loaded: LoadedManifest, schedule: Schedule, argv: Sequence[str],
            executable: str, *, tmpdir: Path, heartbeat_file: Path | None,
            enforcement: str = "enforce", env: Mapping[str, str] | None = None,
            sandbox: Sandbox | None = None) -> Confinement:
    manifest = loaded.manifest
    security = manifest.security
    plain = Confinement(list(argv), executable, "none")
    if security is None:
        return plain
    agent, sched = manifest.agent.name, schedule.id
    enforce = enforcement != "warn"
    severity = events.Severity.CRITICAL if enforce else events.Severity.NOTICE
    audited: list[Audited] = []
    if security.allowed_commands and not command_allowed(
            security.allowed_commands, manifest.run.command, executable):
        audited.append((events.CommandNotAllowed(
            agent=agent, schedule=sched, command=manifest.run.command, refused=enforce),
            severity))
        if enforce:
            return Confinement(list(argv), executable, "none",
                               refused=f"command {manifest.run.command} ({executable}) is "
                                       "not in [security] allowed_commands",
                               exit_code=EXIT_NOT_ALLOWED, events=tuple(audited))
    policy = Policy.from_security(security, loaded.dir)
    if not policy.confines:
        return Confinement(list(argv), executable, "none", events=tuple(audited))
    box = sandbox if sandbox is not None else select_sandbox(
        os.environ if env is None else env)
    why = unenforceable(policy, box)
    if why is not None:
        audited.append((events.SandboxUnavailable(
            agent=agent, schedule=sched,
            reason=why if enforce else f"{why}; ran unconfined ([security] enforcement = "
                                       "\"warn\" in config.toml)",
            refused=enforce), severity))
        if enforce:
            return Confinement(list(argv), executable, "none",
                               refused=f"[security] cannot be enforced: {why}",
                               exit_code=EXIT_SANDBOX_UNAVAILABLE, events=tuple(audited))
        return Confinement(list(argv), executable, "none", events=tuple(audited))
    extra = [tmpdir] + ([heartbeat_file] if heartbeat_file is not None else [])
    wrapped, exe = box.wrap(policy, argv, executable, cwd=loaded.working_dir(),
                            writable_extra=extra)
    return Confinement(wrapped, exe, box.name, events=tuple(audited))
