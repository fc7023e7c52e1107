from __future__ import annotations

import os
from pathlib import Path

from dotagent.discovery import discover, search_roots

from helpers import simple_agent, write_agent


def env_for(home: Path, *roots: Path) -> dict[str, str]:
    return {"DOTAGENT_HOME": str(home), "DOTAGENT_ROOT": os.pathsep.join(map(str, roots)),
            "HOME": str(home)}


def test_root_order(tmp_path: Path) -> None:
    home, r1, r2, cwd = (tmp_path / n for n in ("home", "r1", "r2", "cwd"))
    roots = search_roots(env_for(home, r1, r2), cwd, include_cwd=True)
    assert roots == [r1, r2, home / "agents", cwd / "agents", cwd]


def test_first_root_wins_and_later_duplicate_is_an_error(tmp_path: Path) -> None:
    r1, r2, cwd = tmp_path / "r1", tmp_path / "r2", tmp_path / "cwd"
    cwd.mkdir()
    a = simple_agent(r1, "dup", "true", [])
    b = simple_agent(r2, "dup", "false", [])
    found = discover(env_for(tmp_path / "home", r1, r2), cwd, include_cwd=True)
    assert found.agents["dup"].path == a / "agent.toml"
    [dup] = found.duplicates
    assert (dup.path, dup.owner, dup.name) == (b / "agent.toml", a / "agent.toml", "dup")
    [err] = found.errors()
    assert str(err).startswith(f"{b / 'agent.toml'}:2: agent.name: 'dup' is already used by "
                               f"{a / 'agent.toml'}")


def test_same_file_through_two_roots_is_one_manifest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    simple_agent(home / "agents", "solo", "true", [])
    # ./agents is the home's agents dir, and DOTAGENT_ROOT names it too (through a symlink).
    link = tmp_path / "link"
    link.symlink_to(home / "agents")
    found = discover(env_for(home, link, home / "agents"), home, include_cwd=True)
    assert list(found.agents) == ["solo"]
    assert found.duplicates == [] and found.failures == []


def test_broken_manifest_never_stops_the_others(tmp_path: Path) -> None:
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    cwd.mkdir()
    simple_agent(root, "good-a", "true", [])
    write_agent(root, "broken", "[agent\nname=")
    write_agent(root, "invalid", '[agent]\nname = "x y"\n[run]\ncommand = "true"\n')
    simple_agent(root, "good-b", "true", [])
    found = discover(env_for(tmp_path / "home", root), cwd, include_cwd=True)
    assert sorted(found.agents) == ["good-a", "good-b"]
    assert sorted(f.path.parent.name for f in found.failures) == ["broken", "invalid"]


def test_only_direct_children_and_odd_files_are_reported(tmp_path: Path) -> None:
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    cwd.mkdir()
    simple_agent(root / "nested", "deep", "true", [])  # root/nested/deep/agent.toml: too deep
    (root / "stray.toml").write_text("")
    (root / "dir-named-manifest" / "agent.toml").mkdir(parents=True)
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "agent.toml")  # must not hang
    (root / "zero").mkdir()
    (root / "zero" / "agent.toml").symlink_to("/dev/zero")  # must not exhaust memory
    (root / "dangling").mkdir()
    (root / "dangling" / "agent.toml").symlink_to(tmp_path / "missing")
    (root / "huge").mkdir()
    (root / "huge" / "agent.toml").write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    found = discover(env_for(tmp_path / "home", root), cwd, include_cwd=True)
    assert found.agents == {}
    problems = {f.path.parent.name: str(f.errors[0]).split(": ", 1)[1] for f in found.failures}
    assert problems == {
        "dir-named-manifest": "cannot read: not a regular file",
        "fifo": "cannot read: not a regular file",
        "zero": "cannot read: not a regular file",
        "dangling": "cannot read: No such file or directory",
        "huge": "cannot read: larger than 1024 KiB",
    }


def test_discovery_order_is_sorted_within_a_root(tmp_path: Path) -> None:
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    cwd.mkdir()
    for d, name in (("c", "zeta"), ("a", "alpha"), ("b", "alpha")):
        write_agent(root, name, f'[agent]\nname="{name}"\n[run]\ncommand="true"\n'
                    '[[schedules]]\nid="s"\ntype="interval"\ninterval_minutes=5\n',
                    dirname=d)
    found = discover(env_for(tmp_path / "home", root), cwd, include_cwd=True)
    assert found.agents["alpha"].path == root / "a" / "agent.toml"
    assert found.duplicates[0].path == root / "b" / "agent.toml"


def test_relative_root_becomes_absolute(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    simple_agent(cwd / "rel", "relative", "true", [])
    found = discover({"DOTAGENT_HOME": str(tmp_path / "home"), "DOTAGENT_ROOT": "rel"}, cwd,
                     include_cwd=True)
    assert found.agents["relative"].path == cwd / "rel/relative/agent.toml"
    assert found.agents["relative"].path.is_absolute()
