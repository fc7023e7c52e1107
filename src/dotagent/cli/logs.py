"""`dotagent logs [NAME] [-n N] [-f] [--schedule ID]`: the agents' logs, read in Python.

Without NAME every agent that has a log is shown, interleaved in time order (by the start of
the run each line belongs to; docs/logs.md), each line prefixed `name | `. `-f` keeps
following, across size rotation, until Ctrl-C, SIGTERM or a closed standard output.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from dotagent.cli._agents import complete_agent, complete_schedule
from dotagent.cli._style import paint, terminal_safe, use_color

__all__ = ["DEFAULT_LINES", "POLL_SECONDS", "command"]

DEFAULT_LINES = 50
POLL_SECONDS = 0.2
RESCAN_POLLS = 5  # without NAME, look for agents that started logging once a second


class _Stop(Exception):
    """SIGTERM while following."""


@click.command("logs")
@click.argument("name", required=False, shell_complete=complete_agent)
@click.option("-n", "count", type=click.IntRange(min=0), default=DEFAULT_LINES,
              show_default=True, metavar="N", help="Show the last N lines.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing lines as they are written (across rotation).")
@click.option("--schedule", "-s", "schedule_id", metavar="ID", shell_complete=complete_schedule,
              help="Only lines of this schedule's runs.")
def command(name: str | None, count: int, follow: bool, schedule_id: str | None) -> int:
    """Print the last lines of an agent's log, or of every agent's, interleaved."""
    from dotagent.cli.app import invocation_env
    from dotagent.paths import Home

    env = invocation_env()
    home = Home.from_env(env)
    if name is not None:
        agents = {name: _agent_log(home, env, name, schedule_id)}
    else:
        agents = _logged_agents(home)
    prefixed = name is None
    width = max((len(n) for n in agents), default=0)
    if not agents and not follow:
        from dotagent.cli import _streams

        _streams.say("[dotagent] no agent has a log yet\n")
        return 0
    if not follow:
        _print_tail(agents, count, schedule_id, prefixed, width)
        if name is not None and not agents[name].exists() and not _segments(agents[name]):
            from dotagent.cli import _streams
            from dotagent.display import quote_name

            _streams.say(f"[dotagent] agent {quote_name(name)} has no log yet\n")
        return 0
    return _follow(home, agents, count, schedule_id, prefixed, width, fixed=name is not None)


def _segments(active: Path) -> list[Any]:
    from dotagent.state.agentlog import segments

    return segments(active)


def _agent_log(home: Any, env: dict[str, str], name: str, schedule_id: str | None) -> Path:
    """The active log of the agent `name`; NotFoundError when no manifest declares it and it
    has no log either, or when its manifest has no such schedule."""
    from dotagent.discovery import discover
    from dotagent.display import quote_name
    from dotagent.errors import NotFoundError

    active: Path = home.agent_log_file(name)  # UnsafeNameError for a name that is no name
    found = discover(env, include_cwd=False)  # the daemon's agents (S15.8)
    loaded = found.agents.get(name)
    if loaded is None and not active.parent.is_dir():
        known = ", ".join(quote_name(n) for n in sorted(found.agents)) or "none"
        raise NotFoundError(f"agent not found: {quote_name(name)} (no manifest declares it "
                            f"and it has no log; known agents: {known})")
    if loaded is not None and schedule_id is not None:
        ids = [s.id for s in loaded.manifest.schedules]
        if schedule_id not in ids:
            raise NotFoundError(f"schedule id not found: {quote_name(schedule_id)} (agent "
                                f"{quote_name(name)} has: "
                                f"{', '.join(quote_name(i) for i in ids)})")
    return active


def _logged_agents(home: Any) -> dict[str, Path]:
    """Every agent with a log directory, by name."""
    from dotagent.errors import DotagentError

    root = home.root / "logs" / "agents"
    try:
        names = sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out: dict[str, Path] = {}
    for entry in names:
        try:
            active = home.agent_log_file(entry)
        except DotagentError:
            continue  # not a name dotagent would have written
        if active.parent.is_dir() and not active.parent.is_symlink():
            out[entry] = active
    return out


# -- printing ---------------------------------------------------------------------------------
class _Printer:
    def __init__(self, prefixed: bool, width: int) -> None:
        self.prefixed = prefixed
        self.width = width
        self.colour = use_color()

    def line(self, name: str, text: str) -> None:
        text = terminal_safe(text)
        if self.prefixed:
            from dotagent.display import printable

            label = printable(name).ljust(self.width)
            if self.colour:
                label = paint(label, "cyan")
            text = f"{label} | {text}"
        sys.stdout.write(text + "\n")


def _print_tail(agents: dict[str, Path], count: int, schedule_id: str | None,
                prefixed: bool, width: int,
                handles: dict[str, tuple[Any, int]] | None = None) -> None:
    from dotagent.state.logread import merge_tails, tail_agent

    tails = {}
    for name, active in agents.items():
        fh, end = (handles or {}).get(name, (None, None))
        tails[name] = tail_agent(active, count, schedule=schedule_id, stamped=prefixed,
                                 fh=fh, end=end)
    printer = _Printer(prefixed, width)
    # One agent's lines are in file order; several are merged by their runs' starts.
    ordered = merge_tails(tails, count) if prefixed else \
        [(name, line) for name, lines in tails.items() for line in lines]
    for name, stamped in ordered:
        printer.line(name, stamped.line)
    sys.stdout.flush()


def _follow(home: Any, agents: dict[str, Path], count: int, schedule_id: str | None,
            prefixed: bool, width: int, *, fixed: bool) -> int:
    from dotagent.cli import _streams
    from dotagent.state.logfollow import LogFollower

    def stop(signum: int, frame: Any) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    followers: dict[str, LogFollower] = {}
    handles: dict[str, tuple[Any, int]] = {}
    printer = _Printer(prefixed, width)
    polls = 0
    try:
        for name, active in agents.items():
            followers[name] = _start(active, schedule_id, handles, name)
        _print_tail(agents, count, schedule_id, prefixed, width, handles)
        while True:
            for name in sorted(followers):
                for text in followers[name].poll():
                    printer.line(name, text)
            sys.stdout.flush()
            if _streams.failure("stdout") is not None or _reader_gone() \
                    or _streams.closed_at_start(1):
                break  # nobody reads any more (or the output is full, or closed): stop
            polls += 1
            if not fixed and polls % RESCAN_POLLS == 0:
                for name, active in _logged_agents(home).items():
                    if name not in followers:
                        # A new agent's log: follow it from its start.
                        followers[name] = LogFollower(active, schedule=schedule_id)
                        printer.width = max(printer.width, len(name))
            time.sleep(POLL_SECONDS)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for follower in followers.values():
            follower.close()
    return 0


def _start(active: Path, schedule_id: str | None, handles: dict[str, tuple[Any, int]],
           name: str) -> Any:
    """A follower for `active` from where its whole lines end now (the tail is printed up to
    the same byte, through the same open file, so nothing is shown twice or missed)."""
    from dotagent.state.logfollow import LogFollower
    from dotagent.state.logread import complete_end, tail_agent

    try:
        fh = open(active, "rb")  # noqa: SIM115 - handed to the follower
    except FileNotFoundError:
        return LogFollower(active, schedule=schedule_id)
    end = complete_end(fh)
    handles[name] = (fh, end)
    current = None
    if schedule_id is not None:
        last = tail_agent(active, 1, stamped=True, fh=fh, end=end)
        current = last[-1].schedule if last else None
    return LogFollower(active, fh=fh, position=end, schedule=schedule_id, current=current)


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reader went away (`logs -f | head`), seen
    without writing: poll() reports an error on the write end of a pipe nobody reads."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # errors and hang-ups are always reported
        return any(flags & (select.POLLERR | select.POLLHUP)
                   for _, flags in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False
