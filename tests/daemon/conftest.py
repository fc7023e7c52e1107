"""Fixtures for the daemon tests (the helpers are in daemon_kit.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_kit import VENV_BIN, DaemonFactory, DaemonProcess


@pytest.fixture
def daemon_env(dotagent_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DOTAGENT_HOME"] = str(dotagent_home)
    env.pop("DOTAGENT_ROOT", None)
    return env


@pytest.fixture
def home(dotagent_home: Path) -> Path:
    """The test's DOTAGENT_HOME, with `agents/` and a config whose shutdown grace is short
    (SIGTERM → SIGKILL after 1 s: the tests kill agents that would sleep for minutes)."""
    (dotagent_home / "agents").mkdir()
    (dotagent_home / "config.toml").write_text("[daemon]\nshutdown_grace_seconds = 1\n")
    return dotagent_home


@pytest.fixture
def daemons(home: Path, daemon_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFactory]:
    """Make daemons with `daemons()`; every one is killed, with all it left, at teardown."""
    factory = DaemonFactory(home, daemon_env, tmp_path_factory.mktemp("daemonlog"))
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def daemon(daemons: DaemonFactory) -> DaemonProcess:
    """One daemon for the test's home (not started: call `.start()`)."""
    return daemons()


