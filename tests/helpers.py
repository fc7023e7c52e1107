"""Small builders shared by tests (imported as `from helpers import ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
DOTAGENT = str(VENV_BIN / "dotagent")


def write_agent(root: Path, name: str, body: str, *, files: dict[str, str] | None = None,
                dirname: str | None = None) -> Path:
    """Create `root/<dirname or name>/agent.toml` from a dedented body; return the dir."""
    d = root / (dirname or name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "agent.toml").write_text(textwrap.dedent(body).lstrip())
    for rel, content in (files or {}).items():
        p = d / rel
        p.write_text(textwrap.dedent(content).lstrip())
        p.chmod(0o755)
    return d


def simple_agent(root: Path, name: str, command: str, args: list[str], *,
                 timeout: int = 30, extra: str = "", schedule_args: list[str] | None = None,
                 env: str = "") -> Path:
    def toml_list(items: list[str]) -> str:
        import json
        return json.dumps(items)

    body = f"""
    [agent]
    name = "{name}"
    timeout_seconds = {timeout}
    {extra}
    [run]
    command = "{command}"
    args = {toml_list(args)}
    {env}
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 60
    args = {toml_list(schedule_args or [])}
    """
    return write_agent(root, name, body)


def sh_agent(root: Path, name: str, script: str, *, schedules: str | None = None) -> Path:
    """An agent running `/bin/sh -c script`; `schedules` replaces its one `[[schedules]]`
    table (id "main", every 60 minutes) with tables of your own."""
    import json

    return write_agent(root, name, f"""
    [agent]
    name = "{name}"
    timeout_seconds = 30
    [run]
    command = "/bin/sh"
    args = ["-c", {json.dumps(script)}]
    """ + (schedules or """
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 60
    """))


def dotagent(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOTAGENT, *args], capture_output=True, text=True,
                          env=env if env is not None else dict(os.environ), cwd=cwd,
                          timeout=timeout, check=False)
