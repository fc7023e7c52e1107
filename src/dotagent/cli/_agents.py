"""Finding the agent and schedule a command names, with errors that list what exists.

Every command that acts on one agent goes through `find_agent`, so a name claimed by a
broken manifest is refused the same way everywhere (S15.8).
"""

from __future__ import annotations

import os
from typing import Any

import click

from dotagent.display import quote_name
from dotagent.errors import NotFoundError, UsageError

__all__ = ["complete_agent", "find_agent", "pick_schedule"]


def find_agent(name: str, found: Any) -> Any:
    """The loaded agent called `name` in `found` (a `Discovery`).

    NotFoundError when nothing claims the name; ConfigError, with that manifest's own errors,
    when the manifest that claims it is broken — never a later manifest of the same name.
    """
    return found.require(name)


def pick_schedule(loaded: Any, schedule_id: str | None) -> Any:
    schedules = loaded.manifest.schedules
    ids = ", ".join(quote_name(s.id) for s in schedules)
    agent = quote_name(loaded.name)
    if schedule_id is None:
        if len(schedules) == 1:
            return schedules[0]
        raise UsageError(f"agent {agent} has several schedules; choose one with "
                            f"--schedule ({ids})")
    for sched in schedules:
        if sched.id == schedule_id:
            return sched
    raise NotFoundError(f"schedule id not found: {quote_name(schedule_id)} (agent {agent} "
                        f"has: {ids})")


def complete_agent(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Agent names for shell completion, honouring a `--home` already on the command line
    (the group's callback does not run while completing)."""
    from dotagent.cli.app import invocation_env
    from dotagent.discovery import discover

    env = invocation_env()
    home = ctx.find_root().params.get("home")
    if home:
        env["DOTAGENT_HOME"] = os.path.abspath(home)
    try:
        # Completion serves `run`, which also searches ./agents and ./.
        names = sorted(discover(env, include_cwd=True).agents)
    except Exception:  # completion must never break the shell
        return []
    return [n for n in names if n.startswith(incomplete)]
