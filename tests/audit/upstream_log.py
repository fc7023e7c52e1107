"""Logs written and rotated the way upstream dotagent 0.6 does it (UPSTREAM-0.6 §0, §1),
built by hand here, without our writer: compact serde-style JSON in declared key order, the
seam as the first line of the new live file, no head record, an empty lock file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

GENESIS = "GENESIS"


def line(ts: str, severity: str, event: dict[str, Any], prev: str) -> bytes:
    """One entry as upstream serialises it: ts, severity, event, prev_hash, compact."""
    entry = {"ts": ts, "severity": severity, "event": event, "prev_hash": prev}
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def agent_run(i: int) -> dict[str, Any]:
    return {"event_type": "agent_run", "agent": f"agent-{i % 3}", "schedule": "hourly",
            "slug": "default", "manifest_sha256": "", "exit_code": 0,
            "duration_seconds": i, "timed_out": False}


def ts_of(i: int) -> str:
    return f"2026-08-{1 + (i // 1440) % 28:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00-0300"


def seam(segment: str, lines: list[bytes], ts: str) -> bytes:
    """The seam upstream writes for a segment holding `lines`."""
    body = [x for x in lines if x.strip()]
    tail = sha(body[-1]) if body else GENESIS
    first = json.loads(body[0])["ts"] if body else "unknown"
    event = {"event_type": "audit_log_rotated", "rotated_to": segment, "entries": len(body),
             "first_ts": first, "tail_hash": tail}
    return line(ts, "notice", event, tail)


def chain(start_prev: str, events: list[tuple[str, str, dict[str, Any]]]) -> list[bytes]:
    out = []
    prev = start_prev
    for ts, severity, event in events:
        body = line(ts, severity, event, prev)
        out.append(body)
        prev = sha(body)
    return out


def write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(x + b"\n" for x in lines))


def build(home: Path, sizes: list[int], *,
          names: list[str] | None = None) -> dict[str, list[bytes]]:
    """A log of len(sizes) files as upstream leaves it: each size is the number of agent_run
    entries written into that file (the first file starts at GENESIS; every later file starts
    with the seam for the one before). The last file is the live audit.log. Returns the lines
    of every file by name."""
    home.mkdir(parents=True, exist_ok=True)
    names = names or [f"audit.log.202608{10 + k:02d}T101500" for k in range(len(sizes) - 1)]
    assert len(names) == len(sizes) - 1
    files: dict[str, list[bytes]] = {}
    counter = 0
    previous: tuple[str, list[bytes]] | None = None
    for k, n in enumerate(sizes):
        events = [(ts_of(counter + j), "notice", agent_run(counter + j)) for j in range(n)]
        counter += n
        if previous is None:
            lines = chain(GENESIS, events)
        else:
            name, old = previous
            first = seam(name, old, ts_of(counter))
            lines = [first, *chain(sha(first), events)]
        target = names[k] if k < len(names) else "audit.log"
        files[target] = lines
        previous = (target, lines)
    for name, lines in files.items():
        write(home / name, lines)
    (home / "audit.log.lock").write_bytes(b"")  # upstream never writes into its lock file
    return files
