"""config.toml as the foreground commands need it (run, run-now, tick)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dotagent.cli import _streams
from dotagent.paths import Home

if TYPE_CHECKING:
    from dotagent.audit import AuditLog
    from dotagent.secrets import SecretStore

__all__ = ["enforcement", "load_store", "log_limits"]


def log_limits(home: Home) -> tuple[int, int] | None:
    """`[logging]` agent log limits. A broken config.toml does not stop a foreground run: the
    defaults apply, and the person at the terminal is told (the daemon refuses to start)."""
    from dotagent.config import load_config

    result = load_config(home)
    if result.config is None:
        if result.exists:
            _streams.say(f"[dotagent] warning: {result.path} has errors (`dotagent doctor` "
                         "lists them); using the default log limits for this run\n")
        return None
    logging = result.config.logging
    return (logging.agent_log_max_bytes, logging.agent_log_keep)


def enforcement(home: Home) -> str:
    """`[security] enforcement`; a broken config.toml keeps the default, "enforce" (fail
    closed: a typo must not unconfine an agent)."""
    from dotagent.config import load_config

    config = load_config(home).config
    return "enforce" if config is None else config.security.enforcement


def load_store(home: Home, env: Mapping[str, str], audit: AuditLog | None) -> SecretStore:
    """The secrets store for one foreground command (S14.10: every command that fires
    notifiers, and `run` for an agent with `[env] secrets`). A refused file is audited and
    said on stderr; the command goes on with an empty store. A successful load is not
    audited: `secrets_loaded` is the daemon's record of its store (S6)."""
    from dotagent.config import load_config
    from dotagent.secrets import load_secrets

    config = load_config(home).config  # None (broken config.toml): [secrets].file unknown
    return load_secrets(home, config, env, audit=audit, say=_streams.say, audit_loaded=False)
