"""`--home` and `--debug` before or after the command; an empty home is a usage error
(issue 7, items 6 and 15; S15.12)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent

EMPTY_HOME = ("Error: DOTAGENT_HOME is set but empty: name a directory, or unset it to use "
              "the default (~/.config/dotagent)\n")


@pytest.mark.parametrize("args", [["doctor"], ["run", "x"], ["audit", "verify"],
                                  ["audit", "show"], ["selfcheck"]], ids=" ".join)
def test_empty_dotagent_home_is_a_usage_error(args: list[str], cli_env: dict[str, str]) -> None:
    cli_env["DOTAGENT_HOME"] = ""
    p = dotagent(*args, env=cli_env)
    assert (p.returncode, p.stdout, p.stderr) == (2, "", EMPTY_HOME)
    # The default home was not used instead.
    assert not (Path(cli_env["HOME"]) / ".config").exists()


@pytest.mark.parametrize("args", [["--home", "", "doctor"], ["--home=", "doctor"],
                                  ["doctor", "--home", ""], ["run", "x", "--home="],
                                  ["audit", "verify", "--home", ""]], ids=" ".join)
def test_empty_home_option_is_a_usage_error(args: list[str], cli_env: dict[str, str]) -> None:
    p = dotagent(*args, env=cli_env)
    assert p.returncode == 2
    assert "Invalid value for '--home': must not be empty" in p.stderr
    assert not (Path(cli_env["HOME"]) / ".config").exists()


@pytest.mark.parametrize("args", [["--home", "", "--version"], ["--version", "--home", ""],
                                  ["-V", "--home="], ["--home=", "calendar", "daily"]],
                         ids=" ".join)
def test_empty_home_option_is_a_usage_error_beside_version_too(
        args: list[str], cli_env: dict[str, str]) -> None:
    p = dotagent(*args, env=cli_env)
    assert (p.returncode, p.stdout) == (2, "")
    assert "Invalid value for '--home': must not be empty" in p.stderr


@pytest.mark.parametrize("args", [["--version"], ["calendar", "daily"]], ids=" ".join)
def test_an_empty_dotagent_home_matters_only_to_commands_that_use_the_home(
        args: list[str], cli_env: dict[str, str]) -> None:
    # The variable is part of the environment, not of this command line: a command that
    # never opens the home (the version, the calendar) has nothing to refuse.
    cli_env["DOTAGENT_HOME"] = ""
    p = dotagent(*args, env=cli_env)
    assert p.returncode == 0, p.stderr


def test_home_after_the_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    other = tmp_path / "other-home"
    simple_agent(other / "agents", "homed", "sh", ["-c", 'echo "$DOTAGENT_HOME"'])
    p = dotagent("run", "homed", "--home", str(other), env=cli_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{other}\n"  # the agent sees the home it runs under
    assert (other / "state/agents/homed/default.heartbeat.json").exists()
    p = dotagent("doctor", "--json", "--home", str(other), env=cli_env)
    assert json.loads(p.stdout)["home"] == str(other)
    p = dotagent("audit", "show", "--home", str(other), env=cli_env)
    assert p.returncode == 0 and "agent=homed" in p.stdout


def test_relative_home_is_made_absolute(tmp_path: Path, cli_env: dict[str, str]) -> None:
    simple_agent(tmp_path / "rel/agents", "homed", "sh", ["-c", 'echo "$DOTAGENT_HOME"'])
    p = dotagent("run", "homed", "--home", "rel", env=cli_env, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout == f"{tmp_path / 'rel'}\n"


def test_debug_after_the_command(cli_env: dict[str, str]) -> None:
    for args in (["run", "nobody", "--debug"], ["--debug", "run", "nobody"]):
        p = dotagent(*args, env=cli_env)
        assert p.returncode == 66
        assert "Traceback (most recent call last)" in p.stderr
        assert p.stderr.endswith("Error: agent not found: 'nobody' (known agents: none)\n")
    p = dotagent("run", "nobody", env=cli_env)
    assert "Traceback" not in p.stderr


def test_debug_is_an_option_not_a_word(cli_env: dict[str, str]) -> None:
    """After `--`, `--debug` is an argument like any other (here: an agent name)."""
    p = dotagent("run", "--", "--debug", env=cli_env)
    assert p.returncode == 66 and "Traceback" not in p.stderr
    assert "agent not found: '--debug'" in p.stderr


def test_subcommand_help_lists_the_global_options(cli_env: dict[str, str]) -> None:
    for args in (["run", "--help"], ["audit", "verify", "--help"], ["doctor", "--help"]):
        p = dotagent(*args, env=cli_env)
        assert p.returncode == 0 and "--home DIR" in p.stdout and "--debug" in p.stdout


def test_completion_honours_home_after_the_command(tmp_path: Path,
                                                   cli_env: dict[str, str]) -> None:
    other = tmp_path / "other"
    simple_agent(other / "agents", "gamma", "true", [])
    env = dict(cli_env, _DOTAGENT_COMPLETE="bash_complete",
               COMP_WORDS=f"dotagent run --home {other} g", COMP_CWORD="4")
    p = dotagent(env=env)
    assert p.returncode == 0 and p.stdout.split() == ["plain,gamma"]
    assert os.environ.get("DOTAGENT_HOME") != str(other)
