"""What a run's process sees: argv, the resolved executable, its working directory and env
(SPEC S3.2, S14.19)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dotagent.manifest import LoadedManifest, Schedule, expand_user
from dotagent.runner.process import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, SpawnError

__all__ = ["EXIT_CONFIG", "RunContext", "build_env", "resolve_command", "secret_env"]


@dataclass(frozen=True)
class RunContext:
    loaded: LoadedManifest
    schedule: Schedule
    slug: str
    dry_run: bool
    start_epoch: int
    tmpdir: Path
    heartbeat_file: Path | None  # None in dry-run: the variable is then unset

    @property
    def argv(self) -> list[str]:
        run = self.loaded.manifest.run
        return [run.command, *run.args, *self.schedule.args]


EXIT_CONFIG = 78  # sysexits EX_CONFIG: a secret the manifest asks for is not available


def build_env(ctx: RunContext, parent: Mapping[str, str],
              secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parent env (unless `inherit = false`; only the `[security] env_passthrough` names
    when that list is set) + `[env].extra` + the `[env].secrets` values +
    the AGENT_* contract. SpawnError (exit 78) when a named secret is not in `secrets`."""
    manifest = ctx.loaded.manifest
    passthrough = manifest.security.env_passthrough if manifest.security is not None else []
    if passthrough:
        # `[security] env_passthrough` clears the environment: only the listed names come
        # from the parent, whatever `[env] inherit` says (docs/decisions.md).
        env = {name: parent[name] for name in passthrough if name in parent}
    else:
        env = dict(parent) if manifest.env.inherit else {}
    env.update(manifest.env.extra)
    env.update(secret_env(manifest.env.secrets, secrets))
    env.update({
        "AGENT_NAME": manifest.agent.name,
        "AGENT_SCHEDULE_ID": ctx.schedule.id,
        "AGENT_SLUG": ctx.slug,
        "AGENT_HOME": str(ctx.loaded.dir),
        "AGENT_TMPDIR": str(ctx.tmpdir),
        "AGENT_DRY_RUN": "true" if ctx.dry_run else "false",
        "AGENT_START_EPOCH": str(ctx.start_epoch),
        "AGENT_ARGV": json.dumps(list(ctx.schedule.args), ensure_ascii=False,
                                 separators=(",", ":")),
    })
    if ctx.heartbeat_file is not None:
        env["AGENT_HEARTBEAT_FILE"] = str(ctx.heartbeat_file)
    else:
        env.pop("AGENT_HEARTBEAT_FILE", None)
    return env


def secret_env(names: Sequence[str], secrets: Mapping[str, str] | None) -> dict[str, str]:
    """The `[env] secrets` part of an agent's environment: exactly the named values.

    A name the store lacks stops the run before it starts (a clear failed attempt, retried
    and notified like any other) rather than running the agent without its credential."""
    if not names:
        return {}
    store: Mapping[str, str] = secrets if secrets is not None else {}
    missing = [name for name in dict.fromkeys(names) if store.get(name) is None]
    if missing:
        listed = ", ".join(missing)
        path = getattr(store, "path", None)
        refused = getattr(store, "refused", None)
        if refused:
            why = f"the secrets file was refused: {refused}"
        elif path is None:
            why = "no secrets file is loaded (see docs/secrets.md for where it is read from)"
        else:
            why = f"{path} does not define {'it' if len(missing) == 1 else 'them'}"
        raise SpawnError(f"[env] secrets asks for {listed}, but {why}", EXIT_CONFIG)
    return {name: store[name] for name in names}


def resolve_command(command: str, working_dir: Path, path_env: str | None) -> str:
    try:
        return _resolve(command, working_dir, path_env)
    except OSError as exc:  # a name too long, a loop of links: the command cannot start
        raise SpawnError(f"cannot use {exc.filename or command}: {exc.strerror or exc}",
                         EXIT_CANNOT_EXECUTE) from None


def _resolve(command: str, working_dir: Path, path_env: str | None) -> str:
    """Find the executable the way a user expects (S14.19).

    A bare name is looked up on dotagent's own PATH — so `env.inherit = false` cannot make
    `python3` unfindable — and a path with a slash is taken relative to the working directory.
    Raises SpawnError with exit code 127 (not found) or 126 (not executable).
    """
    if not working_dir.is_dir():
        what = "does not exist" if not working_dir.exists() else "is not a directory"
        raise SpawnError(f"working_dir {working_dir} {what}", EXIT_CANNOT_EXECUTE)
    if "/" not in command:
        found = shutil.which(command, path=path_env if path_env is not None else os.defpath)
        if found is None:
            # which() skips non-executable files; say so rather than "not found".
            for entry in (path_env or os.defpath).split(os.pathsep):
                candidate = Path(entry or ".") / command
                if candidate.is_file():
                    raise SpawnError(f"{candidate} is not executable (chmod +x?)",
                                     EXIT_CANNOT_EXECUTE)
            raise SpawnError(f"command not found: {command} (searched PATH)", EXIT_NOT_FOUND)
        return os.path.abspath(found)
    path = expand_user(command)
    if not path.is_absolute():
        path = working_dir / path
    if not path.exists():
        raise SpawnError(f"command not found: {path}", EXIT_NOT_FOUND)
    if path.is_dir():
        raise SpawnError(f"{path} is a directory, not a command", EXIT_CANNOT_EXECUTE)
    if not os.access(path, os.X_OK):
        raise SpawnError(f"{path} is not executable (chmod +x?)", EXIT_CANNOT_EXECUTE)
    return str(path.absolute())
