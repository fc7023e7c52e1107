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

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dotagent.audit import events
from dotagent.manifest import LoadedManifest, Schedule
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


def command_allowed(allowed: Sequence[str], command: str, executable: str | None, *,
                    working_dir: Path, path_env: str | None) -> bool:
    """`[run].command` matches an entry as written, or as the absolute path it is found at.

    Each entry is taken as written and as the executable it resolves to (PATH for a bare
    name, the working directory for a path), so "python3" matches "/usr/bin/python3"; and
    each absolute form with its directory resolved through symlinks (on a merged-/usr
    system /bin/sh and /usr/bin/sh are one file). Never the file itself: two names of one
    multi-call binary (busybox's ls and rm) are different commands, and a symlink's target
    need not be listed."""
    from dotagent.runner.process import SpawnError
    from dotagent.runner.spawn import resolve_command

    def spellings(form: str) -> set[str]:
        forms = {form}
        with contextlib.suppress(SpawnError, ValueError):
            forms.add(resolve_command(form, working_dir, path_env))
        return forms | {_real_directory(f) for f in forms if os.path.isabs(f)}

    mine = {command} | ({executable} if executable else set())
    mine |= {_real_directory(form) for form in mine if os.path.isabs(form)}
    return any(mine & spellings(entry) for entry in allowed)


def _real_directory(path: str) -> str:
    """`path` with its directory resolved through symlinks, the last component kept."""
    head, tail = os.path.split(path)
    try:
        return os.path.join(os.path.realpath(head), tail)
    except (OSError, ValueError):
        return path


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
            security.allowed_commands, manifest.run.command, executable,
            working_dir=loaded.working_dir(), path_env=os.environ.get("PATH")):
        audited.append((events.CommandNotAllowed(
            agent=agent, schedule=sched, command=manifest.run.command, refused=enforce),
            severity))
        if enforce:
            return Confinement(list(argv), executable, "none",
                               refused=f"command {manifest.run.command} ({executable}) is "
                                       "not in [security] allowed_commands",
                               exit_code=EXIT_NOT_ALLOWED, events=tuple(audited))
    policy = Policy.from_security(security, loaded.working_dir())
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
