"""Finding the agent and schedule a command names, with errors that list what exists."""

from __future__ import annotations

import os
from typing import Any

import click

from dotagent.errors import NotFoundError, UsageError

__all__ = ["complete_agent", "find_agent", "pick_schedule"]


def find_agent(name: str, found: Any = None) -> Any:
    from dotagent.discovery import discover  # lazily: `--help` must not load pydantic

    found = found or discover()
    loaded = found.get(name)
    if loaded is not None:
        return loaded
    known = ", ".join(sorted(found.agents)) or "none"
    hint = ""
    if found.failures:
        hint = (f"; {len(found.failures)} manifest(s) failed to load — run `dotagent doctor` "
                "to see why")
    raise NotFoundError(f"agent not found: {name} (known agents: {known}){hint}")


def pick_schedule(loaded: Any, schedule_id: str | None) -> Any:
    schedules = loaded.manifest.schedules
    ids = ", ".join(s.id for s in schedules)
    if schedule_id is None:
        if len(schedules) == 1:
            return schedules[0]
        raise UsageError(f"agent {loaded.name} has several schedules; choose one with "
                            f"--schedule ({ids})")
    for sched in schedules:
        if sched.id == schedule_id:
            return sched
    raise NotFoundError(f"schedule id not found: {schedule_id} (agent {loaded.name} has: {ids})")


def complete_agent(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Agent names for shell completion, honouring a `--home` already on the command line
    (the group's callback does not run while completing)."""
    from dotagent.discovery import discover

    env = dict(os.environ)
    home = ctx.find_root().params.get("home")
    if home:
        env["DOTAGENT_HOME"] = os.path.abspath(home)
    try:
        names = sorted(discover(env).agents)
    except Exception:  # completion must never break the shell
        return []
    return [n for n in names if n.startswith(incomplete)]
