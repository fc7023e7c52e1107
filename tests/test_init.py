"""`dotagent init NAME`: a new agent that `doctor` finds clean and `run` runs, never written
over anything."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent


def doctor_clean(env: dict[str, str], name: str, cwd: Path | None = None) -> None:
    p = dotagent("doctor", "--json", env=env, cwd=cwd)
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    [m] = [m for m in report["manifests"] if m["name"] == name]
    assert (m["status"], m["errors"], m["warnings"]) == ("ok", [], []), m
    assert report["general"] == []
    assert report["summary"]["errors"] == 0 and report["summary"]["warnings"] == 0, report


def audit_types(home: Path, agent: str) -> list[str]:
    out = []
    for line in (home / "audit.log").read_text().splitlines():
        event = json.loads(line)["event"]
        if event.get("agent") == agent:
            out.append(event["event_type"])
    return out


def test_init_then_doctor_is_clean_and_run_succeeds(dotagent_home: Path,
                                                    cli_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    p = dotagent("init", "my-agent", env=cli_env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = dotagent_home / "agents/my-agent"
    assert p.stdout.splitlines()[0] == f"created agent 'my-agent' in {d}"
    assert "note:" not in p.stdout  # $DOTAGENT_HOME/agents is the daemon's
    assert sorted(x.name for x in d.iterdir()) == ["agent.toml", "run.sh"]
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "agent.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "run.sh").stat().st_mode) == 0o700
    assert (d / "run.sh").read_text().startswith("#!/bin/sh\n")
    doctor_clean(cli_env, "my-agent", cwd=tmp_path)
    p = dotagent("run", "my-agent", env=cli_env, cwd=tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, "hello from my-agent (schedule daily)\n",
                                                 "")
    p = dotagent("run", "my-agent", "--dry-run", env=cli_env, cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "my-agent: dry run, nothing done\n")


def test_an_agent_added_to_a_home_with_history_is_no_phantom(dotagent_home: Path,
                                                             cli_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    """In a home that has seen agents, a new name is a phantom (critical) unless recorded:
    init records the manifest it made, so doctor stays clean and run warns of nothing."""
    simple_agent(dotagent_home / "agents", "older", "true", [],
                 extra='[security]\nallowed_commands = ["true"]')
    assert dotagent("run", "older", env=cli_env, cwd=tmp_path).returncode == 0
    assert dotagent("init", "newer", env=cli_env, cwd=tmp_path).returncode == 0
    doctor_clean(cli_env, "newer", cwd=tmp_path)
    p = dotagent("run", "newer", env=cli_env, cwd=tmp_path)
    assert (p.returncode, p.stderr) == (0, "")
    assert audit_types(dotagent_home, "newer") == ["manifest_loaded", "agent_run"]
    known = json.loads((dotagent_home / "state/known_manifests.json").read_text())
    sha = known["entries"]["newer"]["sha256"]
    import hashlib

    manifest = dotagent_home / "agents/newer/agent.toml"
    assert sha == hashlib.sha256(manifest.read_bytes()).hexdigest()
    # And a later edit is still drift, as for any agent.
    manifest.write_text(manifest.read_text().replace("hours = [9]", "hours = [10]"))
    p = dotagent("run", "newer", env=cli_env, cwd=tmp_path)
    assert "manifest of 'newer' changed since last seen" in p.stderr


def test_manifest_comments_every_security_key(dotagent_home: Path,
                                              cli_env: dict[str, str]) -> None:
    assert dotagent("init", "commented", env=cli_env).returncode == 0
    lines = (dotagent_home / "agents/commented/agent.toml").read_text().splitlines()
    section = lines[lines.index("[security]") + 1:]
    keys = [i for i, line in enumerate(section) if re.match(r"[a-z_]+ = ", line)]
    assert [section[i].split(" = ")[0] for i in keys] == [
        "allowed_commands", "allowed_plugins", "network", "filesystem_writable",
        "env_passthrough"]
    for i in keys:
        assert section[i - 1].startswith("# "), section[i]


def test_init_never_overwrites(dotagent_home: Path, cli_env: dict[str, str],
                               tmp_path: Path) -> None:
    assert dotagent("init", "mine", env=cli_env).returncode == 0
    d = dotagent_home / "agents/mine"
    (d / "run.sh").write_text("#!/bin/sh\necho edited\n")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    p = dotagent("init", "mine", env=cli_env)
    assert p.returncode == 73
    assert p.stderr == f"Error: not creating agent 'mine': {d}/agent.toml already declares " \
                       "that name\n"
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # Another name into that directory: refused before anything is written.
    p = dotagent("init", "other", "--dir", str(d), env=cli_env)
    assert p.returncode == 73
    assert f"{d}/agent.toml and {d}/run.sh already exist" in p.stderr
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # Only a run.sh there (a directory of scripts): still refused, no agent.toml appears.
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "run.sh").write_text("mine\n")
    p = dotagent("init", "third", "--dir", str(scripts), env=cli_env)
    assert p.returncode == 73 and f"{scripts}/run.sh already exists" in p.stderr
    assert sorted(x.name for x in scripts.iterdir()) == ["run.sh"]


def test_a_name_claimed_elsewhere_is_refused(dotagent_home: Path, cli_env: dict[str, str],
                                            tmp_path: Path) -> None:
    root = tmp_path / "root"
    simple_agent(root, "taken", "true", [])
    (root / "broken").mkdir()
    (root / "broken/agent.toml").write_text("[agent\n")
    cli_env["DOTAGENT_ROOT"] = str(root)
    for name, path in (("taken", root / "taken/agent.toml"),
                       ("broken", root / "broken/agent.toml")):
        p = dotagent("init", name, env=cli_env)
        assert p.returncode == 73, p.stderr
        assert p.stderr == f"Error: not creating agent '{name}': {path} already declares " \
                           "that name\n"
    assert not (dotagent_home / "agents").exists()


@pytest.mark.parametrize("name", ["a/b", "..", "x" * 65, "bad name", "caf\u00e9", ""])
def test_invalid_names_are_usage_errors(name: str, dotagent_home: Path,
                                        cli_env: dict[str, str]) -> None:
    p = dotagent("init", name, env=cli_env)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("Error: invalid agent name: ")
    assert "Traceback" not in p.stderr
    assert not (dotagent_home / "agents").exists()


def test_dir_outside_the_daemons_roots(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """--dir names the agent's directory itself; one the daemon does not search is said,
    and `run` finds it from its parent (run searches ./)."""
    d = tmp_path / "projects" / "tool"
    p = dotagent("init", "tool", "--dir", str(d), env=cli_env)
    assert p.returncode == 0, p.stderr
    assert f"note: {d.parent} is not searched by the daemon" in p.stdout
    assert (d / "agent.toml").is_file()
    doctor_clean(cli_env, "tool", cwd=d.parent)
    p = dotagent("run", "tool", env=cli_env, cwd=d.parent)
    assert (p.returncode, p.stdout) == (0, "hello from tool (schedule daily)\n")
