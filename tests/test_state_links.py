"""A symlink planted in dotagent's own places is refused, never followed (docs/security.md).

Whoever can write into the home could otherwise make dotagent append to, truncate or chmod a
file elsewhere: the lock files are written (the head's copy), the audit log is appended to
and tightened to 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent

POLICY = "is a symlink (to {target}); dotagent does not follow links in its state directory"


@pytest.fixture
def home(dotagent_home: Path) -> Path:
    simple_agent(dotagent_home / "agents", "ok", "true", [])
    first = dotagent("run", "ok")
    assert first.returncode == 0, first.stderr
    return dotagent_home


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(b"the user's own notes\n")
    path.chmod(0o644)
    return path


def untouched(path: Path) -> bool:
    return (path.read_bytes() == b"the user's own notes\n"
            and stat.S_IMODE(path.stat().st_mode) == 0o644)


@pytest.mark.parametrize("name", ["audit.log.lock", "audit.log", "state/known_manifests.lock",
                                  "state/known_manifests.json", "state/audit.head",
                                  "state/history.sqlite3",
                                  "state/agents/ok/default.heartbeat.lock",
                                  "logs/agents/ok/ok.log"])
def test_a_planted_file_link_is_refused_and_its_target_left_alone(
        home: Path, tmp_path: Path, name: str) -> None:
    target = victim(tmp_path)
    planted = home / name
    planted.unlink()
    planted.symlink_to(target)
    p = dotagent("run", "ok")
    if name == "state/history.sqlite3":
        # The history is best effort: the run goes on, and the refusal is said.
        assert p.returncode == 0
        assert f"[dotagent] error: agent 'ok', schedule 'main': cannot open {planted}: " \
            in p.stderr
    else:
        assert p.returncode == 77, p.stderr
    if name.startswith("logs/"):
        # A per-agent path is built by Home.join, which refuses a link leading outside first.
        assert f"Error: {name} resolves outside {home}" in p.stderr
    else:
        assert f"{planted} " + POLICY.format(target=target) in p.stderr
    assert "Traceback" not in p.stderr
    assert untouched(target)
    assert planted.is_symlink()


def test_verify_refuses_an_audit_log_that_is_a_link_to_a_regular_file(
        home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.log"
    (home / "audit.log").rename(target)
    target.chmod(0o644)
    before = target.read_bytes()
    (home / "audit.log").symlink_to(target)
    for args in (["audit", "verify"], ["audit", "show"], ["audit", "repair"]):
        p = dotagent(*args)
        assert p.returncode == 1, (args, p.stdout)
        assert "intact" not in p.stdout
        assert f"{home / 'audit.log'} " + POLICY.format(target=target) in p.stderr
    assert target.read_bytes() == before and stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.parametrize("directory", ["state", "logs", "state/agents", "state/locks"])
def test_a_planted_directory_link_leads_no_write_outside(
        home: Path, tmp_path: Path, directory: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    real = home / directory
    real.rename(tmp_path / "moved-away")
    real.symlink_to(elsewhere)
    p = dotagent("run", "ok")
    assert p.returncode == 77, p.stderr
    assert "Traceback" not in p.stderr
    assert list(elsewhere.iterdir()) == []
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


def test_a_link_inside_the_home_is_refused_too(home: Path, tmp_path: Path) -> None:
    # Not only links that lead outside: dotagent's places are real files and directories.
    state = home / "state"
    state.rename(home / "state.real")
    state.symlink_to("state.real")
    p = dotagent("run", "ok")
    assert p.returncode == 77
    assert f"{state} " + POLICY.format(target="state.real") in p.stderr


def test_a_home_that_is_itself_a_link_is_fine(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real-home"
    real.mkdir()
    link = tmp_path / "home-link"
    link.symlink_to(real)
    monkeypatch.setenv("DOTAGENT_HOME", str(link))
    simple_agent(real / "agents", "ok", "true", [])
    assert dotagent("run", "ok").returncode == 0
    assert dotagent("run", "ok").returncode == 0
    assert dotagent("audit", "verify").returncode == 0
    assert (real / "audit.log").is_file() and not (real / "audit.log").is_symlink()


def test_tightening_never_follows_a_link(home: Path, tmp_path: Path) -> None:
    target = victim(tmp_path)
    target.chmod(0o666)
    (home / "daemon.sha256").symlink_to(target)
    (home / "logs" / "agents" / "notes").symlink_to(target)
    assert dotagent("run", "ok").returncode == 0
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666
