"""The click application: a lazily loaded command group and the one error boundary."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from typing import Any

import click

from dotagent import __version__
from dotagent.errors import DotagentError

__all__ = ["COMMANDS", "run_app"]

# name -> "module:attribute". Each command module is imported only when that command runs
# (or when --help lists the commands), so start-up never pays for the others.
COMMANDS: dict[str, str] = {
    "run": "dotagent.cli.run:command",
    "doctor": "dotagent.cli.doctor:command",
    "selfcheck": "dotagent.cli.selfcheck:command",
    "audit": "dotagent.cli.audit:group",
    "calendar": "dotagent.cli.calendar:command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", "-V", prog_name="dotagent",
                      message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="State directory (overrides $DOTAGENT_HOME).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, home: str | None) -> None:
    """dotagent: run small scripts on a schedule, and keep a record you can trust.

    Agents are directories holding an agent.toml manifest, discovered in $DOTAGENT_ROOT
    (colon-separated), $DOTAGENT_HOME/agents, ./agents and ./ in that order.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if home:
        os.environ["DOTAGENT_HOME"] = os.path.abspath(home)


def run_app(args: list[str]) -> int:
    debug = "--debug" in args
    try:
        result: Any = cli.main(args=args, prog_name="dotagent", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        sys.stderr.write("Aborted.\n")
        return 130
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except DotagentError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"Error: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    except BrokenPipeError:
        # `dotagent doctor | head`: the reader went away; that is not our error.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 141
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        from dotagent.paths import resolve_home

        home = resolve_home()
        hint = ""
        if exc.filename and str(exc.filename).startswith(str(home)):
            hint = f" (in the state directory {home}; is DOTAGENT_HOME right?)"
        sys.stderr.write(f"Error: cannot use{where}: {exc.strerror or exc}{hint}\n")
        return 1
    except Exception as exc:  # the boundary: never a traceback unless asked for
        if debug:
            traceback.print_exc()
        sys.stderr.write(
            f"Error: internal error: {type(exc).__name__}: {exc} (run with --debug for details)\n"
        )
        return 1
    return int(result) if isinstance(result, int) else 0
