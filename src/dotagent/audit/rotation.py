"""Audit-log segments and the rotation seam, in upstream 0.6's format (UPSTREAM-0.6 §1).

When the live `audit.log` has reached `DEFAULT_MAX_BYTES` (32 MiB) the next append renames it
to a *segment*, `audit.log.<YYYYMMDDTHHMMSS>` (local time, `-1` … `-999` when taken), and
starts a fresh `audit.log` whose first line is the *seam*:

    {"ts":…,"severity":"notice","event":{"event_type":"audit_log_rotated",
     "rotated_to":"audit.log.20260826T101500","entries":N,"first_ts":"…",
     "tail_hash":"<sha256 of the segment's last non-blank line>"},"prev_hash":"<tail_hash>"}

`prev_hash == tail_hash` is what links the two files. This module holds the pure parts
(names, the seam's shape, reading a segment's first and last line); the writer
(`chain.AuditLog`) does the renaming under its lock, and `walk` follows the seams.

Nothing here deletes a segment, ever: retention never touches them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dotagent.audit.events import AuditLogRotated
from dotagent.audit.record import GENESIS, render_line
from dotagent.errors import StateError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_SUFFIX",
    "Seam",
    "first_entry",
    "first_ts",
    "free_segment_name",
    "is_segment_name",
    "list_segments",
    "parse_seam",
    "render_seam",
    "segment_facts",
    "segment_sort_key",
    "segment_stamp",
    "tail_hash",
]

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
MAX_SUFFIX = 999
_STAMP = re.compile(r"\d{8}T\d{6}(?:-(\d+))?")
_SEAM_EVENT = b'"event_type":"audit_log_rotated"'
_TAIL_CHUNK = 8192
_FIRST_LINE_LIMIT = 1 << 16  # a seam is ~330 bytes; a first line longer than this is not one


def is_segment_name(name: str, stem: str = "audit.log") -> bool:
    """Upstream's test: `<stem>.` + a 15-character stamp (`T` at index 8, digits elsewhere) +
    an optional `-<digits>`; never a path (`/`, `\\`, `..`)."""
    if "/" in name or "\\" in name or ".." in name:
        return False
    prefix = stem + "."
    return name.startswith(prefix) and _STAMP.fullmatch(name[len(prefix):]) is not None


def segment_sort_key(name: str) -> tuple[str, int]:
    """Oldest first: by stamp, then by the numeric suffix (`-2` before `-10`)."""
    stamp, _, suffix = name.rpartition(".")[2].partition("-")
    return stamp, int(suffix) if suffix.isdigit() else 0


def segment_stamp(moment: datetime) -> str:
    """`YYYYMMDDTHHMMSS` of `moment` in local time (a naive value is read as local time)."""
    return moment.astimezone().strftime("%Y%m%dT%H%M%S")


def free_segment_name(live: Path, moment: datetime) -> str:
    """The first of `<live>.<stamp>`, `-1` … `-999` that does not exist yet.

    StateError when all 1,000 are taken (upstream fails with AlreadyExists there too).
    """
    base = f"{live.name}.{segment_stamp(moment)}"
    for n in range(MAX_SUFFIX + 1):
        name = base if n == 0 else f"{base}-{n}"
        if not os.path.lexists(live.with_name(name)):
            return name
    raise StateError(f"cannot rotate the audit log {live}: {base} and its suffixes -1 … "
                     f"-{MAX_SUFFIX} all exist already")


def list_segments(live: Path) -> list[str]:
    """The segment names beside `live`, oldest first. For display: verification follows the
    seams, not the names."""
    try:
        names = os.listdir(live.parent)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot list {live.parent}: {exc.strerror or exc}") from exc
    return sorted((n for n in names if is_segment_name(n, live.name)), key=segment_sort_key)


@dataclass(frozen=True)
class Seam:
    """A valid seam: an `audit_log_rotated` entry whose prev_hash equals its tail_hash and
    whose `rotated_to` is a segment name."""

    ts: str
    rotated_to: str
    entries: int
    first_ts: str
    tail_hash: str
    line_hash: str  # sha256 of the seam line itself

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "rotated_to": self.rotated_to, "entries": self.entries,
                "first_ts": self.first_ts, "tail_hash": self.tail_hash}


def parse_seam(body: bytes, stem: str = "audit.log") -> Seam | None:
    """The seam on `body` (one line, no newline), or None when the line is not a valid one.

    A seam-shaped entry whose hashes disagree, or that names something that is not a
    segment, is not a seam: its file then starts with an unexplained truncation.
    """
    if _SEAM_EVENT not in body:
        return None
    try:
        entry = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(entry, dict):
        return None
    event = entry.get("event")
    if not isinstance(event, dict) or event.get("event_type") != "audit_log_rotated":
        return None
    rotated_to, entries = event.get("rotated_to"), event.get("entries")
    first_ts, tail, prev = event.get("first_ts"), event.get("tail_hash"), entry.get("prev_hash")
    ts = entry.get("ts")
    if not (isinstance(rotated_to, str) and isinstance(tail, str) and isinstance(prev, str)
            and isinstance(entries, int) and not isinstance(entries, bool) and entries >= 0
            and prev == tail and is_segment_name(rotated_to, stem)):
        return None
    return Seam(ts=ts if isinstance(ts, str) else "", rotated_to=rotated_to, entries=entries,
                first_ts=first_ts if isinstance(first_ts, str) else "unknown",
                tail_hash=tail, line_hash=hashlib.sha256(body).hexdigest())


def render_seam(segment: str, *, entries: int, first_ts: str, tail: str, ts: str) -> bytes:
    """The seam line (no newline), byte for byte what upstream writes."""
    event = AuditLogRotated(rotated_to=segment, entries=entries, first_ts=first_ts,
                            tail_hash=tail)
    return render_line(event, ts=ts, prev_hash=tail)


def _first_complete(data: bytes) -> bytes | None:
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return None
        line = data[start:end]
        if line.strip():
            return line
        start = end + 1


def first_entry(fd: int) -> bytes | None:
    """The first non-blank complete line of the open file, if it ends within 64 KiB.

    Reads 4 KiB first: every append looks at the live file's first line, which is short.
    """
    data = os.pread(fd, 4096, 0)
    found = _first_complete(data)
    if found is None and len(data) == 4096:
        found = _first_complete(os.pread(fd, _FIRST_LINE_LIMIT, 0))
    return found


def first_ts(line: bytes | None) -> str:
    """`ts` of an entry line, or `unknown` (what upstream writes when it has none)."""
    if line is None:
        return "unknown"
    with contextlib.suppress(ValueError):
        entry = json.loads(line)
        if isinstance(entry, dict) and isinstance(entry.get("ts"), str):
            return str(entry["ts"])
    return "unknown"


def tail_hash(fd: int, size: int) -> str:
    """sha256 of the last non-blank line before `size` (`GENESIS` when there is none).

    Reads backwards from the end in growing chunks; bytes after the last newline count as
    the last line, as upstream reads them. Hashes the exact bytes, as the chain does.
    """
    buf = b""
    start = size
    chunk = _TAIL_CHUNK
    while True:
        lines = buf.split(b"\n")
        # lines[0] may be cut at the front while there is more before it.
        for line in reversed(lines[1:] if start > 0 else lines):
            if line.strip():
                return hashlib.sha256(line).hexdigest()
        if start == 0:
            return GENESIS
        n = min(chunk, start)
        start -= n
        buf = os.pread(fd, n, start) + buf
        chunk *= 2


def segment_facts(path: Path) -> tuple[int, str, str]:
    """(entries, first_ts, tail_hash) of a segment, as a seam for it states them: the count of
    non-blank lines, the first entry's ts (or `unknown`), the hash of its last non-blank line
    (`GENESIS` when empty). Streams the file once."""
    entries = 0
    first: bytes | None = None
    last = b""
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if not line.strip():
                continue
            entries += 1
            if first is None:
                first = line
            last = line
    tail = hashlib.sha256(last).hexdigest() if entries else GENESIS
    return entries, first_ts(first), tail
