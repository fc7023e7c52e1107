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


RECORDER = """import json, os, sys
verb = sys.argv[1]
data = sys.stdin.buffer.read()
out = os.environ["RECORD_DIR"]
n = len(os.listdir(out))
with open(os.path.join(out, f"{n:03d}-{verb}.json"), "wb") as fh:
    fh.write(data)
print(json.dumps({"ok": True}))
"""


def recorded(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(directory.iterdir())]


def audit_events(home: Path, event_type: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    import json

    path = home / "audit.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        if line.strip():
            record = json.loads(line)
            out.append({"severity": record["severity"], **record["event"]})
    return [e for e in out if event_type is None or e["event_type"] == event_type]


def history_rows(home: Path) -> list[dict]:  # type: ignore[type-arg]
    import sqlite3

    path = home / "state" / "history.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id").fetchall()]
    finally:
        conn.close()
