"""Fixtures for the daemon tests (the helpers are in daemon_kit.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The test modules say `from daemon_kit import ...`. Registered by hand rather than by
# putting this directory on sys.path, where its `conftest` would shadow tests/conftest.py.
if "daemon_kit" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "daemon_kit", Path(__file__).resolve().with_name("daemon_kit.py"))
    assert _spec is not None and _spec.loader is not None
    sys.modules["daemon_kit"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["daemon_kit"])

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


