"""`dotagent completions bash|zsh|fish`: the shell script that completes dotagent's words.

The script is click's (the same text `_DOTAGENT_COMPLETE=bash_source dotagent` prints): at
each TAB it runs `dotagent` again with `_DOTAGENT_COMPLETE=<shell>_complete`, and click asks
the commands — command names from the lazy group, agent names from `complete_agent`, a
schedule's ids after `--schedule` from `complete_schedule`.
"""

from __future__ import annotations

import sys

import click

__all__ = ["COMPLETE_VAR", "SHELLS", "command"]

COMPLETE_VAR = "_DOTAGENT_COMPLETE"
SHELLS = ("bash", "zsh", "fish")

@click.command("completions")
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell: str) -> int:
    """Print the completion script for SHELL (bash, zsh or fish).

    Completes commands, options, agent names and, after --schedule, that agent's schedule
    ids. Load it with:

    \b
      bash: eval "$(dotagent completions bash)"   (in ~/.bashrc)
      zsh:  eval "$(dotagent completions zsh)"    (in ~/.zshrc, after compinit)
      fish: dotagent completions fish > ~/.config/fish/completions/dotagent.fish
    """
    from click.shell_completion import get_completion_class

    from dotagent.cli.app import cli

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    script = cls(cli, {}, "dotagent", COMPLETE_VAR).source()
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return 0
