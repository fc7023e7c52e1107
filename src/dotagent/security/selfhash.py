"""Self-hash of the installed dotagent (threat model V3; S14.25).

`$DOTAGENT_HOME/daemon.sha256` holds one aggregate sha256 over the files that make up the
installed tool: every file of the `dotagent` package (bytecode caches excluded) and the
`dotagent` entry script. `state/selfcheck.json` keeps the per-file list so that a mismatch can
name what changed. An editable (development) install changes the hash on every edit;
re-record with `dotagent selfcheck --record`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_atomic, write_json_atomic
from dotagent.filehash import sha256_file
from dotagent.paths import Home

__all__ = ["SelfcheckResult", "compute", "installed_files", "record", "verify"]

HASH_FILE = "daemon.sha256"
LIST_FILE = "selfcheck.json"


def installed_files() -> dict[str, Path]:
    """name → path of every file that makes up this installation."""
    import dotagent

    package = Path(dotagent.__file__).resolve().parent
    files: dict[str, Path] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"dotagent/{path.relative_to(package).as_posix()}"] = path
    entry = _entry_script()
    if entry is not None:
        files["bin/dotagent"] = entry
    return files


def _entry_script() -> Path | None:
    beside = Path(sys.executable).parent / "dotagent"
    if beside.is_file():
        return beside
    found = shutil.which("dotagent")
    return Path(found) if found else None


def compute(files: dict[str, Path] | None = None) -> tuple[str, dict[str, str]]:
    """(aggregate, per-file hashes). The aggregate hashes `<sha>  <name>` lines in name
    order, so adding, removing or renaming a file changes it too."""
    files = installed_files() if files is None else files
    per_file = {name: sha256_file(path) for name, path in sorted(files.items())}
    lines = "".join(f"{sha}  {name}\n" for name, sha in per_file.items())
    return hashlib.sha256(lines.encode()).hexdigest(), per_file


@dataclass
class SelfcheckResult:
    status: str  # "recorded", "ok", "mismatch"
    expected: str | None
    actual: str
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        return self.status != "mismatch"

    def summary(self) -> str:
        parts = []
        for label, names in (("changed", self.changed), ("added", self.added),
                             ("removed", self.removed)):
            if names:
                shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)"
                                                if len(names) > 5 else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts) or "the file list is unavailable"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "expected_sha256": self.expected,
                "actual_sha256": self.actual, "files": self.files, "changed": self.changed,
                "added": self.added, "removed": self.removed}


def record(home: Home, now: datetime) -> SelfcheckResult:
    aggregate, per_file = compute()
    write_atomic(home.root / HASH_FILE, (aggregate + "\n").encode(), mode=0o600)
    write_json_atomic(home.state_dir / LIST_FILE, {
        "recorded_at_iso": now.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z"),
        "aggregate_sha256": aggregate, "files": per_file})
    return SelfcheckResult("recorded", None, aggregate, files=len(per_file))


def recorded(home: Home) -> str | None:
    try:
        text = (home.root / HASH_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text.split()[0] if text else None


def verify(home: Home) -> SelfcheckResult:
    expected = recorded(home)
    aggregate, per_file = compute()
    result = SelfcheckResult("ok" if expected == aggregate else "mismatch", expected,
                             aggregate, files=len(per_file))
    if result.ok:
        return result
    try:
        old = json.loads((home.state_dir / LIST_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return result
    if isinstance(old, dict):
        result.changed = sorted(n for n in per_file if n in old and old[n] != per_file[n])
        result.added = sorted(n for n in per_file if n not in old)
        result.removed = sorted(n for n in old if n not in per_file)
    return result
