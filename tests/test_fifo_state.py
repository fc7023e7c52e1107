"""A FIFO in place of a state file never hangs a command (one bounded, non-blocking,
regular-file-only reader: dotagent.boundedread).

Each case starts from a home where `run` and `selfcheck` have recorded their state, puts a
named pipe where one file was, and runs a command with a deadline: before the fix each of
these blocked in open() or read() forever.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent

DEADLINE = 30  # seconds; a healthy command takes well under 2


@pytest.fixture
def home(dotagent_home: Path) -> Path:
    simple_agent(dotagent_home / "agents", "ok", "true", [], extra="")
    assert dotagent("run", "ok").returncode == 0
    assert dotagent("selfcheck").returncode == 0
    return dotagent_home


def fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.parametrize("name", ["state/known_plugins.json",
                                  "state/agents/ok/default.heartbeat.json",
                                  "state/known_manifests.json", "state/selfcheck.json",
                                  "daemon.sha256", "state/daemon.pid", "state/daemon.lock"])
@pytest.mark.parametrize("command", [["run", "ok"], ["doctor"], ["selfcheck"]])
def test_a_fifo_in_place_of_a_state_file_does_not_hang(home: Path, name: str,
                                                       command: list[str]) -> None:
    fifo(home / name)
    p = dotagent(*command, timeout=DEADLINE)
    assert "Traceback" not in p.stderr
    assert p.returncode in (0, 1), p.stderr


def test_the_plugin_registry_as_a_fifo_is_reported_by_name(home: Path) -> None:
    registry = home / "state/known_plugins.json"
    fifo(registry)
    p = dotagent("run", "ok", timeout=DEADLINE)
    assert p.returncode == 0
    assert p.stderr == (f"[dotagent] warning: {registry} is unreadable: it is a named pipe, "
                        "not a regular file; every plugin is treated as first seen\n")


def test_a_heartbeat_fifo_is_treated_as_no_heartbeat_and_replaced(home: Path) -> None:
    beat = home / "state/agents/ok/default.heartbeat.json"
    fifo(beat)
    assert dotagent("run", "ok", timeout=DEADLINE).returncode == 0
    assert beat.is_file() and '"exit_code": 0' in beat.read_text()


def test_selfcheck_with_a_fifo_for_daemon_sha256_says_so_and_restores_it(home: Path) -> None:
    fifo(home / "daemon.sha256")
    p = dotagent("selfcheck", timeout=DEADLINE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("warning: daemon.sha256 was unusable (a named pipe, not a "
                               "regular file); the installation matches the last hash")
    assert (home / "daemon.sha256").is_file()


def test_selfcheck_with_a_fifo_for_the_audit_log_is_refused_by_name(home: Path) -> None:
    (home / "daemon.sha256").unlink()  # the last recorded hash is then read from the log
    fifo(home / "audit.log")
    p = dotagent("selfcheck", timeout=DEADLINE)
    assert p.returncode == 1
    assert p.stderr == (f"Error: cannot append to the audit log {home / 'audit.log'}: it is a "
                        "named pipe, not a regular file (move it aside; dotagent creates the "
                        "file it needs)\n")


def test_a_mismatch_with_a_fifo_for_the_file_list_does_not_hang(home: Path) -> None:
    (home / "daemon.sha256").write_text("0" * 64 + "\n")
    fifo(home / "state/selfcheck.json")
    p = dotagent("selfcheck", timeout=DEADLINE)
    assert p.returncode == 1 and p.stdout.startswith("MISMATCH")


def test_a_plugin_that_is_a_fifo_does_not_hang(home: Path, tmp_path: Path) -> None:
    plugins = home / "plugins"
    plugins.mkdir()
    os.mkfifo(plugins / "dotagent-plugin-pipe")
    simple_agent(home / "agents", "hooked", "true", [],
                 extra='[[preflight]]\nplugin = "pipe"\n'.replace("\n", "\n    "))
    for command in (["run", "hooked"], ["doctor"]):
        p = dotagent(*command, timeout=DEADLINE)
        assert "Traceback" not in p.stderr
