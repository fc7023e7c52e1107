"""Real plugin executables for the tests: written into a tmp dir, found through
DOTAGENT_PLUGIN_PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def write_plugin(directory: Path, name: str, body: str, *, python: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"dotagent-plugin-{name}"
    shebang = f"#!{sys.executable}\n" if python else "#!/bin/sh\n"
    path.write_text(shebang + body)
    path.chmod(0o755)
    return path


def plugin_env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DOTAGENT_PLUGIN_PATH"] = str(directory)
    return env
