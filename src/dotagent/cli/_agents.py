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

__all__ = ["complete_agent", "complete_schedule", "find_agent", "pick_schedule"]


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


def _completion_env(ctx: click.Context) -> dict[str, str]:
    """The environment completion works in: the invocation's, with a `--home` already on the
    command line (the group's callback does not run while completing)."""
    from dotagent.cli.app import invocation_env

    env = invocation_env()
    home = ctx.find_root().params.get("home")
    if home:
        env["DOTAGENT_HOME"] = os.path.abspath(os.path.expanduser(home))
    return env


def complete_agent(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Agent names for shell completion. Never raises: completion must not break the shell."""
    from dotagent.discovery import discover

    try:
        # Completion serves `run`, which also searches ./agents and ./.
        names = sorted(discover(_completion_env(ctx), include_cwd=True).agents)
    except Exception:
        return []
    return [n for n in names if n.startswith(incomplete)]


def _positional(ctx: click.Context, param_name: str) -> str | None:
    """A positional argument the parse left in `ctx.args`: while completing the value of a
    trailing option (`run NAME --schedule <TAB>`), click's resilient parse stops at that
    option and leaves the words before it unassigned."""
    arguments = [p.name for p in ctx.command.params if isinstance(p, click.Argument)]
    if param_name not in arguments:
        return None
    index = arguments.index(param_name)
    return ctx.args[index] if index < len(ctx.args) else None


def complete_schedule(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """After `--schedule`: the schedule ids of the agent named by the NAME argument already
    on the command line; nothing when there is none yet, or its manifest is broken."""
    from dotagent.discovery import discover

    name = ctx.params.get("name") or _positional(ctx, "name")
    if not isinstance(name, str) or not name:
        return []
    try:
        loaded = discover(_completion_env(ctx), include_cwd=True).get(name)
        ids = [] if loaded is None else [s.id for s in loaded.manifest.schedules]
    except Exception:
        return []
    return [i for i in ids if i.startswith(incomplete)]
