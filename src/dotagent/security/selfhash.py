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
from dotagent.boundedread import NotRegularFile, open_regular, read_bounded
from dotagent.filehash import sha256_file
from dotagent.paths import Home
from dotagent.timefmt import iso

__all__ = ["SelfcheckResult", "compute", "installed_files", "record", "verify"]

HASH_FILE = "daemon.sha256"
LIST_FILE = "selfcheck.json"


def _package_dir() -> Path:
    import dotagent

    return Path(dotagent.__file__).resolve().parent


def installed_files() -> dict[str, Path]:
    """name → path of every file that makes up this installation.

    Bytecode caches are left out of the hash (Python rewrites them on its own); they are
    checked against their sources instead, see `tampered_bytecode`.
    """
    package = _package_dir()
    files: dict[str, Path] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[f"dotagent/{path.relative_to(package).as_posix()}"] = path
    entry = _entry_script()
    if entry is not None:
        files["bin/dotagent"] = entry
    return files


def tampered_bytecode(package: Path | None = None) -> list[str]:
    """Cached bytecode that Python would load instead of its source, but whose code differs
    from that source: the way to change behaviour without changing any hashed file.

    A cache is "live" when its header matches the source (mtime and size, or the source hash
    for hash-based caches); a stale one is ignored, since Python recompiles it.
    """
    import importlib.util
    import marshal

    package = package or _package_dir()
    tag = sys.implementation.cache_tag
    found: list[str] = []
    for pyc in sorted(package.rglob(f"__pycache__/*.{tag}*.pyc")):
        stem = pyc.name.split(".")[0]
        source = pyc.parent.parent / f"{stem}.py"
        try:
            data = pyc.read_bytes()
            src = source.read_bytes()
            st = source.stat()
        except OSError:
            continue  # no source: Python never loads a __pycache__ file on its own
        if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
            continue
        flags = int.from_bytes(data[4:8], "little")
        if flags & 1:
            live = data[8:16] == importlib.util.source_hash(src)
        else:
            live = (int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                    and int.from_bytes(data[12:16], "little") == st.st_size & 0xFFFFFFFF)
        if not live:
            continue
        opt = pyc.name.split(".opt-")[1].split(".")[0] if ".opt-" in pyc.name else "0"
        try:
            cached = marshal.loads(data[16:])
            fresh = compile(src, str(source), "exec", dont_inherit=True, optimize=int(opt))
        except (ValueError, EOFError, TypeError, SyntaxError):
            found.append(f"dotagent/{pyc.relative_to(package).as_posix()}")
            continue
        if cached != fresh:
            found.append(f"dotagent/{pyc.relative_to(package).as_posix()}")
    return found


def last_recorded_in_audit(audit_log: Path) -> str | None:
    """The sha256 of the most recent `selfcheck_recorded` entry, if the log has one."""
    last: str | None = None
    try:
        # Without blocking, and only a regular file: a FIFO in its place is no evidence (the
        # audit write that follows refuses it by name).
        fh = open_regular(audit_log, follow_links=False)
    except OSError:
        return None
    with fh:
        for raw in fh:
            if b'"selfcheck_recorded"' not in raw:
                continue
            try:
                event = json.loads(raw)["event"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(event, dict) and isinstance(event.get("sha256"), str):
                last = event["sha256"]
    return last


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
    bytecode: list[str] = field(default_factory=list)  # caches that differ from their source
    files: int = 0
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "mismatch"

    def summary(self) -> str:
        parts = []
        for label, names in (("changed", self.changed), ("added", self.added),
                             ("removed", self.removed),
                             ("bytecode differs from its source", self.bytecode)):
            if names:
                shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)"
                                                if len(names) > 5 else "")
                parts.append(f"{label}: {shown}")
        if self.note:
            parts.insert(0, self.note)
        return "; ".join(parts) or "the file list is unavailable"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "expected_sha256": self.expected,
                "actual_sha256": self.actual, "files": self.files, "changed": self.changed,
                "added": self.added, "removed": self.removed, "bytecode": self.bytecode,
                "note": self.note}


def record(home: Home, now: datetime) -> SelfcheckResult:
    return _record(home, now)


def _record(home: Home, now: datetime) -> SelfcheckResult:
    aggregate, per_file = compute()
    write_atomic(home.root / HASH_FILE, (aggregate + "\n").encode(), mode=0o600)
    write_json_atomic(home.state_dir / LIST_FILE, {
        "recorded_at_iso": iso(now),
        "aggregate_sha256": aggregate, "files": per_file})
    return SelfcheckResult("recorded", None, aggregate, files=len(per_file))


def recorded(home: Home) -> str | None:
    """The recorded aggregate; None when daemon.sha256 is missing or unusable (not a
    regular file, not text): then the audit log's last record is the evidence."""
    return _recorded(home)[0]


def _recorded(home: Home) -> tuple[str | None, str]:
    """(aggregate or None, what became of daemon.sha256 when None: "was missing", ...)."""
    try:
        text = read_bounded(home.root / HASH_FILE, 4096, follow_links=False).decode(
            "ascii").strip()
    except FileNotFoundError:
        return None, "was missing"
    except NotRegularFile as exc:
        return None, f"was unusable ({exc.kind}, not a regular file)"
    except OSError as exc:
        return None, f"was unreadable ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return None, "was unreadable (not text)"
    return (text.split()[0], "") if text else (None, "was empty")


def verify(home: Home, expected: str | None = None) -> SelfcheckResult:
    """Compare with `daemon.sha256` (or `expected`, when that file is gone)."""
    expected = expected or recorded(home)
    aggregate, per_file = compute()
    bytecode = tampered_bytecode()
    result = SelfcheckResult("ok" if expected == aggregate and not bytecode else "mismatch",
                             expected, aggregate, files=len(per_file), bytecode=bytecode)
    if result.ok or expected == aggregate:
        return result
    try:
        old = json.loads(read_bounded(home.state_dir / LIST_FILE, follow_links=False))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return result
    if isinstance(old, dict):
        result.changed = sorted(n for n in per_file if n in old and old[n] != per_file[n])
        result.added = sorted(n for n in per_file if n not in old)
        result.removed = sorted(n for n in old if n not in per_file)
    return result


def check(home: Home, audit: Any, now: datetime, *, record: bool = False) -> SelfcheckResult:
    """The V3 self-hash check every entry point shares (`selfcheck`, the daemon's start):
    record on first use (or when asked), otherwise verify; a deleted daemon.sha256 is judged
    against the last hash recorded in the audit log. Mismatches and recordings are audited.
    """
    from dotagent.audit import events

    previous, gone = _recorded(home)
    lost: str | None = None
    if previous is None and not record:
        # No daemon.sha256, but a hash was recorded before: the file was deleted. Judge the
        # installation against the last recorded hash rather than silently trusting it.
        lost = last_recorded_in_audit(home.audit_log)
    if lost is not None:
        result = verify(home, expected=lost)
        result.note = f"daemon.sha256 {gone}; compared with the last hash recorded in the " \
                      "audit log"
        if result.ok:
            result = _record(home, now)
            result.note = f"daemon.sha256 {gone}; the installation matches the last hash " \
                          "recorded in the audit log, so the file was restored"
            audit.append(events.SelfcheckRecorded(
                path=str(home.root / HASH_FILE), sha256=result.actual,
                previous_sha256=lost, files=result.files), now=now)
        else:
            audit.append(events.SelfcheckFailed(
                path=str(home.root / HASH_FILE), expected_sha256=lost,
                actual_sha256=result.actual, reason=result.summary()), now=now)
    elif record or previous is None:
        result = _record(home, now)
        audit.append(events.SelfcheckRecorded(
            path=str(home.root / HASH_FILE), sha256=result.actual,
            previous_sha256=previous, files=result.files), now=now)
    else:
        result = verify(home)
        if not result.ok:
            audit.append(events.SelfcheckFailed(
                path=str(home.root / HASH_FILE), expected_sha256=result.expected or "",
                actual_sha256=result.actual, reason=result.summary()), now=now)
    return result
