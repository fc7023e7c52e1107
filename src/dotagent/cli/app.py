"""The click application: a lazily loaded command group and the one error boundary."""

from __future__ import annotations

import importlib
import logging
import os
import traceback
from dataclasses import dataclass
from typing import Any

import click

from dotagent import __version__
from dotagent.cli import _streams
from dotagent.errors import EX_IOERR, EX_SOFTWARE, DotagentError

__all__ = ["COMMANDS", "AgentStatusCommand", "run_app"]

# name -> "module:attribute". Each command module is imported only when that command runs
# (or when --help lists the commands), so start-up never pays for the others.
COMMANDS: dict[str, str] = {
    "run": "dotagent.cli.run:command",
    "doctor": "dotagent.cli.doctor:command",
    "selfcheck": "dotagent.cli.selfcheck:command",
    "audit": "dotagent.cli.audit:group",
    "calendar": "dotagent.cli.calendar:command",
    "run-now": "dotagent.cli.runnow:command",
    "tick": "dotagent.cli.tick:command",
    "reload": "dotagent.cli.reload:command",
    "daemon": "dotagent.cli.daemon:command",
    "daily-summary": "dotagent.cli.summary:command",
    "snooze": "dotagent.cli.snooze:command",
    "pause": "dotagent.cli.pause:pause_command",
    "resume": "dotagent.cli.pause:resume_command",
    "bootstrap": "dotagent.cli.bootstrap:command",
    "plugin": "dotagent.cli.plugin:group",
    "status": "dotagent.cli.status:command",
    "inspect": "dotagent.cli.inspect:command",
    "next": "dotagent.cli.next:command",
    "install": "dotagent.cli.install:install_command",
    "uninstall": "dotagent.cli.install:uninstall_command",
    "completions": "dotagent.cli.completions:command",
    "init": "dotagent.cli.init:command",
    "history": "dotagent.cli.history:command",
    "logs": "dotagent.cli.logs:command",
    "key": "dotagent.cli.trust:key_group",
    "sign": "dotagent.cli.trust:sign_command",
    "approve": "dotagent.cli.trust:approve_command",
    "pending": "dotagent.cli.trust:pending_command",
}

# Exit status when dotagent itself is interrupted (Ctrl-C outside a supervised run).
_INTERRUPTED = 128 + 2


@dataclass
class _Invocation:
    """What the boundary needs to know about the command line being run."""

    debug: bool = False
    agent_status: bool = False  # the running command passes an agent's exit status through
    home: str | None = None  # --home, made absolute


_invocation = _Invocation()


class AgentStatusCommand(click.Command):
    """A command whose exit status is an agent's (`run`; later a foreground `trigger`).

    Declaring a command with `cls=AgentStatusCommand` makes the boundary report dotagent's
    own refusals with sysexits codes (64-78) instead of 1, so that they can never be mistaken
    for the agent's status (S15.10); usage mistakes stay 2.
    """

    passes_agent_status = True

    def invoke(self, ctx: click.Context) -> Any:
        _invocation.agent_status = self.passes_agent_status
        return super().invoke(ctx)


# -- global options -------------------------------------------------------------------------
# `--home` and `--debug` are accepted before the command and after it (`dotagent doctor
# --home X`, `dotagent run x --debug`): the group declares them, and `LazyGroup` adds the
# same two options to every command it hands out, subcommands of nested groups included.

_EMPTY_HOME = "must not be empty (leave --home out to use $DOTAGENT_HOME)"


def _apply_home(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if value == "":
        raise click.BadParameter(_EMPTY_HOME, ctx=ctx, param=param)
    path = os.path.abspath(os.path.expanduser(value))
    _invocation.home = path  # commands read it through invocation_env(); os.environ stays
    return path


def invocation_env() -> dict[str, str]:
    """The environment this invocation works in: the process's, with `--home` applied.

    Commands pass it down (discovery, the home, the agents' environment) instead of
    writing `os.environ`, so nothing below the CLI depends on a global that one option
    rewrote."""
    env = dict(os.environ)
    if _invocation.home is not None:
        env["DOTAGENT_HOME"] = _invocation.home
    return env


def _apply_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        _invocation.debug = True
    return value


_HOME_HELP = "State directory (overrides $DOTAGENT_HOME)."
_DEBUG_HELP = "Show full tracebacks on errors."


def _global_options(expose: bool) -> list[click.Option]:
    return [
        click.Option(["--debug"], is_flag=True, help=_DEBUG_HELP, callback=_apply_debug,
                     expose_value=expose),
        click.Option(["--home"], type=click.Path(file_okay=False), help=_HOME_HELP,
                     metavar="DIR", callback=_apply_home, expose_value=expose),
    ]


def _add_global_options(command: click.Command) -> None:
    taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for option in _global_options(expose=False):
        if not taken.intersection(option.opts):
            command.params.append(option)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_global_options(sub)


class LazyGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `--home ''` is a mistake on any command line, `--version` included: that eager
        # option would otherwise answer before --home is ever looked at. (An empty
        # DOTAGENT_HOME in the environment only matters to commands that use the home.)
        try:
            opts, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except click.UsageError:
            opts = {}  # reported as usual by the real parse below
        if opts.get("home") == "":
            home = next(p for p in self.params if p.name == "home")
            raise click.BadParameter(_EMPTY_HOME, ctx=ctx, param=home)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        if not getattr(command, "_dotagent_globals", False):
            _add_global_options(command)
            command._dotagent_globals = True  # type: ignore[attr-defined]
        return command


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", "-V", prog_name="dotagent",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, /, **_globals: Any) -> None:
    """dotagent: run small scripts on a schedule, and keep a record you can trust.

    Agents are directories holding an agent.toml manifest, discovered in $DOTAGENT_ROOT
    (colon-separated), $DOTAGENT_HOME/agents, ./agents and ./ in that order.

    --home and --debug may also follow the command.
    """
    ctx.ensure_object(dict)


cli.params.extend(_global_options(expose=True))


# -- the boundary -----------------------------------------------------------------------------

def _debug_requested(args: list[str]) -> bool:
    """--debug as click parsed it; before parsing got that far, as written on the line."""
    options = args[: args.index("--")] if "--" in args else args
    return _invocation.debug or "--debug" in options


def _report(exc: BaseException, args: list[str], message: str) -> None:
    if _debug_requested(args):
        _streams.say("".join(traceback.format_exception(exc)))
    _streams.say(f"Error: {message}\n")


def _os_error_message(exc: OSError) -> str:
    where = ""
    if exc.filename is not None:
        where = f" {os.fsdecode(exc.filename)}"
        if exc.filename2 is not None:
            where += f" → {os.fsdecode(exc.filename2)}"
    reason = exc.strerror or str(exc)
    hint = ""
    try:
        from dotagent.paths import resolve_home

        home = str(resolve_home(invocation_env()))
    except DotagentError:
        home = ""
    if home and exc.filename is not None and os.fsdecode(exc.filename).startswith(home):
        hint = f" (in the state directory {home}; is DOTAGENT_HOME right?)"
    return f"cannot use{where}: {reason}{hint}"


class _Diagnostics(logging.Handler):
    """Where a library module's warning goes when nothing else was set up for it (every
    command but the daemon, which logs to its own files): `[dotagent] warning: …` on stderr,
    like every other diagnostic a command prints."""

    def emit(self, record: logging.LogRecord) -> None:
        _streams.say(f"[dotagent] {record.levelname.lower()}: {record.getMessage()}\n")


def run_app(args: list[str]) -> int:
    """Run one command line; return its exit status (docs/cli.md, "Exit status")."""
    global _invocation
    _invocation = _Invocation()
    logging.lastResort = _Diagnostics(logging.WARNING)
    code = _run(args)
    return _streams.finish(code, agent_status=_invocation.agent_status)


def _run(args: list[str]) -> int:
    # `_invocation.agent_status` is read after the failure: it is set once the command runs.
    try:
        result: Any = cli.main(args=args, prog_name="dotagent", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        _streams.say("Aborted.\n")
        return _INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except DotagentError as exc:
        _report(exc, args, exc.message)
        return exc.sysexit if _invocation.agent_status else exc.exit_code
    except KeyboardInterrupt:
        _streams.say("Interrupted.\n")
        return _INTERRUPTED
    except OSError as exc:
        _report(exc, args, _os_error_message(exc))
        # Errors of dotagent's own files are StateError (73) where they are written; what
        # reaches here unnamed is an input/output error.
        return EX_IOERR if _invocation.agent_status else 1
    except Exception as exc:  # the boundary: never a traceback unless asked for
        _report(exc, args, f"internal error: {type(exc).__name__}: {exc} "
                           "(run with --debug for details)")
        return EX_SOFTWARE if _invocation.agent_status else 1
    return int(result) if isinstance(result, int) else 0
