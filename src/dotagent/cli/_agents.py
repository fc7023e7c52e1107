"""Finding the agent and schedule a command names, with errors that list what exists.

Every command that acts on one agent goes through `find_agent`, so a name claimed by a
broken manifest is refused the same way everywhere (S15.8).
"""

from __future__ import annotations

import os
from typing import Any

import click

from dotagent.display import printable, quote_name
from dotagent.errors import ConfigError, NotFoundError, UsageError

__all__ = ["complete_agent", "find_agent", "pick_schedule"]


def find_agent(name: str, found: Any) -> Any:
    """The loaded agent called `name` in `found` (a `Discovery`).

    NotFoundError when nothing claims the name; ConfigError, with that manifest's own errors,
    when the manifest that claims it is broken — never a later manifest of the same name.
    """
    loaded = found.get(name)
    if loaded is not None:
        return loaded
    broken = found.broken_claim(name)
    if broken is not None:
        lines = [f"agent {quote_name(name)} cannot be used: its manifest "
                 f"{printable(str(broken.path))} has {len(broken.errors)} error(s):"]
        lines.extend(f"  {p}" for p in broken.errors)
        for dup in found.duplicates_of(name):
            lines.append(f"  ({printable(str(dup.path))} declares the same name and is "
                         "ignored while this one holds it)")
        raise ConfigError("\n".join(lines))
    known = ", ".join(quote_name(n) for n in sorted(found.agents)) or "none"
    hint = ""
    if found.failures:
        hint = (f"; {len(found.failures)} manifest(s) failed to load — run `dotagent doctor` "
                "to see why")
    raise NotFoundError(f"agent not found: {quote_name(name)} (known agents: {known}){hint}")


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
