"""config.toml as the foreground commands need it (run, run-now, tick)."""

from __future__ import annotations

from dotagent.cli import _streams
from dotagent.paths import Home

__all__ = ["log_limits"]


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
