"""Shell completion through the real `dotagent`: the scripts, and the words click answers
when a shell asks (`_DOTAGENT_COMPLETE=bash_complete COMP_WORDS=… COMP_CWORD=…`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click
import pytest

from dotagent.cli._agents import complete_agent, complete_schedule
from dotagent.cli.app import COMMANDS, LazyGroup, cli

from helpers import DOTAGENT, dotagent, simple_agent, write_agent

TWO_SCHEDULES = """
[agent]
name = "reporter"
[run]
command = "true"
[[schedules]]
id = "morning"
type = "cron"
weekdays = []
hours = [8]
[[schedules]]
id = "month-end"
type = "expression"
expression = "*-*~01 18:00"
args = ["--month-end"]
"""


def complete(words: str, env: dict[str, str],
             shell: str = "bash") -> subprocess.CompletedProcess[str]:
    """What `dotagent` answers for the command line `words` (the cursor at its end)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {**env, "_DOTAGENT_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}
    # From the home: `run` completion also searches ./agents and ./ (none there).
    return subprocess.run([DOTAGENT], capture_output=True, text=True, env=env, timeout=60,
                          check=False, cwd=env["DOTAGENT_HOME"] if os.path.isdir(
                              env["DOTAGENT_HOME"]) else None)


def values(p: subprocess.CompletedProcess[str]) -> list[str]:
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = []
    for line in p.stdout.splitlines():
        if not line:  # bash's answer when there is nothing to offer
            continue
        kind, _, value = line.partition(",")
        assert kind == "plain", line
        out.append(value)
    return out


@pytest.fixture
def agents(dotagent_home: Path, cli_env: dict[str, str]) -> dict[str, str]:
    root = dotagent_home / "agents"
    simple_agent(root, "alpha", "true", [])
    simple_agent(root, "alpine", "true", [])
    write_agent(root, "reporter", TWO_SCHEDULES)
    write_agent(root, "broken", '[agent]\nname = "broken"\n[run]\ncommand = [\n')
    return cli_env


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_prints_clicks_script(shell: str, cli_env: dict[str, str]) -> None:
    p = dotagent("completions", shell, env=cli_env)
    assert p.returncode == 0 and p.stderr == ""
    source = subprocess.run([DOTAGENT], capture_output=True, text=True, check=True,
                            env={**cli_env, "_DOTAGENT_COMPLETE": f"{shell}_source"}).stdout
    assert p.stdout.strip() == source.strip()
    assert f"_DOTAGENT_COMPLETE={shell}_complete" in p.stdout


def test_completions_refuses_other_shells(cli_env: dict[str, str]) -> None:
    p = dotagent("completions", "tcsh", env=cli_env)
    assert p.returncode == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in p.stderr


def test_commands_complete_from_the_lazy_group(agents: dict[str, str]) -> None:
    assert values(complete("dotagent ", agents)) == sorted(COMMANDS)
    assert values(complete("dotagent ins", agents)) == ["inspect", "install"]
    assert values(complete("dotagent ini", agents)) == ["init"]
    assert values(complete("dotagent completions ", agents)) == ["bash", "zsh", "fish"]


def test_agent_names_complete(agents: dict[str, str]) -> None:
    # The broken manifest claims its name too; completion lists the agents that can run.
    assert values(complete("dotagent run ", agents)) == ["alpha", "alpine", "reporter"]
    assert values(complete("dotagent run alp", agents)) == ["alpha", "alpine"]
    assert values(complete("dotagent run-now r", agents)) == ["reporter"]
    assert values(complete("dotagent snooze ", agents)) == ["alpha", "alpine", "reporter"]


def test_schedule_ids_complete_after_schedule(agents: dict[str, str]) -> None:
    for line in ("dotagent run reporter --schedule ", "dotagent run reporter -s ",
                 "dotagent run-now reporter --schedule ",
                 "dotagent snooze reporter 1h --schedule ",
                 "dotagent run --debug reporter -s "):
        assert values(complete(line, agents)) == ["morning", "month-end"], line
    assert values(complete("dotagent run reporter --schedule mo", agents)) == [
        "morning", "month-end"]
    assert values(complete("dotagent run reporter --schedule mon", agents)) == ["month-end"]
    assert values(complete("dotagent run alpha --schedule ", agents)) == ["main"]
    # No NAME yet, or one nothing declares: nothing to offer.
    assert values(complete("dotagent run --schedule ", agents)) == []
    assert values(complete("dotagent run nobody --schedule ", agents)) == []


def test_a_broken_manifest_never_breaks_completion(agents: dict[str, str]) -> None:
    p = complete("dotagent run broken --schedule ", agents)
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, "", "")
    # Even a root that cannot be read, or a home that is not a directory.
    env = {**agents, "DOTAGENT_ROOT": "/proc/1/root/nonexistent"}
    assert values(complete("dotagent run alp", env)) == ["alpha", "alpine"]
    env = {**agents, "DOTAGENT_HOME": str(Path(agents["DOTAGENT_HOME"]) / "agents/alpha/"
                                          "agent.toml")}
    p = complete("dotagent run reporter --schedule ", env)
    assert (p.returncode, p.stdout.strip()) == (0, "") and "Traceback" not in p.stderr


def test_home_on_the_command_line_is_used(tmp_path: Path, cli_env: dict[str, str]) -> None:
    other = tmp_path / "other"
    write_agent(other / "agents", "reporter", TWO_SCHEDULES)
    assert values(complete("dotagent run ", cli_env)) == []
    assert values(complete(f"dotagent --home {other} run ", cli_env)) == ["reporter"]
    assert values(complete(f"dotagent --home {other} run reporter -s ", cli_env)) == [
        "morning", "month-end"]


def test_zsh_answers_carry_the_type_and_value(agents: dict[str, str]) -> None:
    p = complete("dotagent run alp", agents, shell="zsh")
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["plain", "alpha", "_", "plain", "alpine", "_"]


def test_real_bash_completes_with_the_script(agents: dict[str, str], tmp_path: Path) -> None:
    """The script as a user loads it, in bash: COMPREPLY after `dotagent run <TAB>` and
    after `--schedule <TAB>`."""
    script = dotagent("completions", "bash", env=agents).stdout
    (tmp_path / "dotagent.bash").write_text(script)
    probe = f"""
source {tmp_path / 'dotagent.bash'}
COMP_WORDS=(dotagent run al); COMP_CWORD=2; COMPREPLY=()
_dotagent_completion dotagent
echo "names: ${{COMPREPLY[*]}}"
COMP_WORDS=(dotagent run reporter --schedule ''); COMP_CWORD=4; COMPREPLY=()
_dotagent_completion dotagent
echo "ids: ${{COMPREPLY[*]}}"
complete -p dotagent
"""
    env = {**agents, "PATH": f"{Path(DOTAGENT).parent}{os.pathsep}{agents['PATH']}"}
    p = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["names: alpha alpine", "ids: morning month-end",
                                     "complete -o nosort -F _dotagent_completion dotagent"]


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    group = cli
    assert isinstance(group, LazyGroup)
    out: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in command.commands.items()]
        else:
            out.append((name, command))
    return out


def test_every_agent_name_and_schedule_completes() -> None:
    """Every command that takes an agent's NAME completes it, and every --schedule ID
    completes that agent's schedule ids (`plugin invoke` names a plugin, and its --schedule
    is a free label)."""
    checked = 0
    for path, command in _commands():
        if path.startswith("plugin "):
            continue
        for param in command.params:
            custom = getattr(param, "_custom_shell_complete", None)
            if isinstance(param, click.Argument) and param.name == "name" and path != "init":
                assert custom is complete_agent, path
                checked += 1
            if isinstance(param, click.Option) and "--schedule" in param.opts:
                assert custom is complete_schedule, path
    assert checked >= 3
