from __future__ import annotations

import os
from pathlib import Path

import pytest

from dotagent.errors import UnsafeNameError
from dotagent.paths import Home, resolve_home, safe_component, unsafe_reason


@pytest.mark.parametrize(
    "name",
    ["daily-report", "inbox_triage", "disk.alert", "A1", "x" * 64, "a..b", "a-", "a--b"],
)
def test_safe_names_accepted(name: str) -> None:
    assert safe_component(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "must not be empty"),
        (".", "'.' is not allowed"),
        ("..", "'..' is not allowed"),
        ("../etc", "'/'"),
        ("a/b", "'/'"),
        ("a b", "' '"),
        ("x" * 65, "65 characters"),
        ("nul\0", "'\\x00'"),
        ("café", "'é'"),
        ("-rf", "starts with '-'"),
        ("--help", "read as an option"),
    ],
)
def test_unsafe_names_rejected(name: str, fragment: str) -> None:
    reason = unsafe_reason(name)
    assert reason is not None and fragment in reason
    with pytest.raises(UnsafeNameError):
        safe_component(name)


def test_resolve_home_precedence(tmp_path: Path) -> None:
    assert resolve_home({"DOTAGENT_HOME": str(tmp_path), "HOME": "/x"}) == tmp_path
    assert resolve_home({"HOME": "/x"}) == Path("/x/.config/dotagent")
    assert resolve_home({}) == Path.cwd() / ".dotagent"


def test_join_refuses_escape(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.root.mkdir()
    assert home.join("state", "agents", "ok") == home.root / "state" / "agents" / "ok"
    for bad in ("..", ".", "a/b", "", "x\0"):
        with pytest.raises(UnsafeNameError):
            home.join("state", bad)


def test_join_refuses_symlink_escape(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    (home.root / "state").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, home.root / "state" / "agents")
    with pytest.raises(UnsafeNameError):
        home.join("state", "agents", "victim")


def test_heartbeat_path_rejects_bad_agent(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with pytest.raises(UnsafeNameError):
        home.heartbeat_file("../../etc", "default")
    assert home.heartbeat_file("a", "default") == tmp_path / "state/agents/a/default.heartbeat.json"
