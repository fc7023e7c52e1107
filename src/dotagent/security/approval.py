"""Approval of new and changed agents: `[trust] approve_new_agents` (issue 11 item 5).

With the setting on, an agent runs only when its manifest's sha256 is the one approved for its
name in `state/approved_manifests.json`; anything else waits (`dotagent pending` lists it)
until `dotagent approve NAME` records the current hash (`agent_approved`, with who; when is
the entry's time). The daemon, `tick`, `run-now` and `run` leave a waiting agent out.

The first time the gate runs with approval on (no file, no `agent_approved` in the audit log),
every agent that is known and unchanged is approved as a baseline (audited with
`via = "baseline"`); a phantom or a drifted agent of that same check is not. When the file has
vanished but the audit log holds approvals, the approved hashes are rebuilt from the log, so
deleting the file does not approve anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.audit import AuditLog, events
from dotagent.boundedread import read_bounded
from dotagent.discovery import Discovery
from dotagent.errors import StateError, UsageError
from dotagent.filelock import locked
from dotagent.manifest import LoadedManifest
from dotagent.paths import Home
from dotagent.timefmt import iso

__all__ = ["APPROVED_FILE", "ApprovalReport", "Waiting", "approve", "check_approvals",
           "whoami"]

APPROVED_FILE = "approved_manifests.json"


@dataclass(frozen=True)
class Waiting:
    agent: str
    path: str
    sha256: str
    approved_sha256: str | None  # None: never approved

    @property
    def reason(self) -> str:
        if self.approved_sha256 is None:
            return "new agent, never approved"
        return (f"changed since approved ({self.approved_sha256[:12]} → "
                f"{self.sha256[:12]})")

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "path": self.path, "sha256": self.sha256,
                "approved_sha256": self.approved_sha256, "reason": self.reason}


@dataclass
class ApprovalReport:
    waiting: dict[str, Waiting] = field(default_factory=dict)
    baseline: list[str] = field(default_factory=list)  # approved as a baseline by this check
    rebuilt: bool = False  # the file was gone; the approvals came from the audit log


def whoami() -> tuple[str, int]:
    import os

    uid = os.getuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name, uid
    except (ImportError, KeyError):
        return os.environ.get("USER") or os.environ.get("LOGNAME") or "", uid


def _path(home: Home) -> Path:
    return home.state_dir / APPROVED_FILE


def _load(home: Home) -> dict[str, dict[str, Any]] | None:
    try:
        data = json.loads(read_bounded(_path(home), 16 * 1024 * 1024, follow_links=False))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # unreadable: treated as gone (rebuilt from the log, never trusted)
    if not isinstance(data, dict):
        return None
    return {str(k): v for k, v in data.items()
            if isinstance(v, dict) and isinstance(v.get("sha256"), str)}


def _from_audit(log: AuditLog) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for _segment, fh in log.readers():
        for raw in fh:
            if b'"agent_approved"' not in raw:
                continue
            try:
                record = json.loads(raw)
                event = record["event"]
            except (ValueError, KeyError, TypeError):
                continue
            if event.get("event_type") == "agent_approved" and \
                    isinstance(event.get("agent"), str) and isinstance(event.get("sha256"), str):
                out[event["agent"]] = {"sha256": event["sha256"], "path": event.get("path", ""),
                                       "approved_at_iso": record.get("ts"),
                                       "via": event.get("via", "approve"),
                                       "user": event.get("user", "")}
    return out


def check_approvals(home: Home, found: Discovery, now: datetime, *,
                    unapproved: Callable[[], Iterable[str]], audit: AuditLog | None = None,
                    update: bool = True) -> ApprovalReport:
    """Which discovered agents wait for approval. `unapproved()` names the agents this scan
    found new or changed (phantoms and drifts): asked only to make the baseline. With
    `update=False` (doctor, `pending`) nothing is written or audited."""
    if not update:
        return _check(home, found, now, unapproved, audit, update=False)
    with locked(home.state_dir / "approved_manifests.lock"):
        return _check(home, found, now, unapproved, audit, update=True)


def _check(home: Home, found: Discovery, now: datetime,
           unapproved: Callable[[], Iterable[str]], audit: AuditLog | None, *,
           update: bool) -> ApprovalReport:
    from dotagent.security.manifests import recorded_path

    report = ApprovalReport()
    log = audit or AuditLog(home)
    approved = _load(home)
    pending_events: list[events.Event] = []
    changed = False
    if approved is None:
        approved = _from_audit(log)
        changed = True
        if approved:
            report.rebuilt = True
        else:
            fresh = set(unapproved())
            stamp = iso(now)
            for name, loaded in found.agents.items():
                if name in fresh:
                    continue
                path = recorded_path(loaded.path)
                approved[name] = {"sha256": loaded.sha256, "path": path,
                                  "approved_at_iso": stamp, "via": "baseline", "user": ""}
                report.baseline.append(name)
                pending_events.append(events.AgentApproved(
                    agent=name, path=path, sha256=loaded.sha256, via="baseline"))
    for name, loaded in found.agents.items():
        known = approved.get(name)
        sha = known.get("sha256") if known else None
        if sha != loaded.sha256:
            report.waiting[name] = Waiting(name, recorded_path(loaded.path), loaded.sha256,
                                           sha if isinstance(sha, str) else None)
    if update:
        for event in pending_events:
            log.append(event, now=now)
        if changed:
            write_json_atomic(_path(home), dict(sorted(approved.items())))
    return report


def approve(home: Home, loaded: LoadedManifest, now: datetime, *, expect: str | None = None,
            audit: AuditLog | None = None) -> bool:
    """Record `loaded`'s current hash as approved (audited `agent_approved`, with who).
    `expect`: the hash (or a prefix of at least 8 hex digits) the user reviewed; refused
    when the manifest no longer has it. False when it was already approved at this hash."""
    from dotagent.security.manifests import recorded_path

    sha = loaded.sha256
    if expect is not None:
        wanted = expect.strip().lower()
        if len(wanted) < 8 or any(c not in "0123456789abcdef" for c in wanted):
            raise UsageError(f"--sha256 {expect!r}: expected at least 8 hex digits of the "
                             "manifest's sha256 (as `dotagent pending` shows it)")
        if not sha.startswith(wanted):
            raise UsageError(f"the manifest of {loaded.name!r} is now {sha[:12]}, not "
                             f"{wanted[:12]}: it changed since you looked; nothing approved")
    log = audit or AuditLog(home)
    user, uid = whoami()
    with locked(home.state_dir / "approved_manifests.lock"):
        approved = _load(home)
        if approved is None:
            approved = _from_audit(log)
        known = approved.get(loaded.name)
        if known is not None and known.get("sha256") == sha:
            return False
        path = recorded_path(loaded.path)
        log.append(events.AgentApproved(agent=loaded.name, path=path, sha256=sha,
                                        via="approve", user=user, uid=uid), now=now)
        approved[loaded.name] = {"sha256": sha, "path": path, "approved_at_iso": iso(now),
                                 "via": "approve", "user": user}
        try:
            write_json_atomic(_path(home), dict(sorted(approved.items())))
        except OSError as exc:
            raise StateError(f"cannot write {_path(home)}: {exc.strerror or exc}") from None
    return True
