"""Shared fixtures. Every test gets its own DOTAGENT_HOME; nothing touches the real ~/.config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def dotagent_home(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    fake_user_home = tmp_path_factory.mktemp("userhome")
    monkeypatch.setenv("DOTAGENT_HOME", str(home))
    monkeypatch.setenv("HOME", str(fake_user_home))
    for var in ("DOTAGENT_ROOT", "DOTAGENT_PLUGIN_PATH", "DOTAGENT_SECRETS_FILE", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def cli_env(dotagent_home: Path) -> dict[str, str]:
    """Environment for running the real `dotagent` executable in a subprocess."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# A real SMTP server on 127.0.0.1 for the email notifier's tests (defined in notify_kit).
from notify_kit import smtp_server  # noqa: E402, F401
