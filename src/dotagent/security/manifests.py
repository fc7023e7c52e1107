"""Manifest drift and phantom agents (threat model V1, V2; SPEC S7, S8, S14.7).

`state/known_manifests.json` remembers the sha256 of every manifest seen. Every command that
executes agents compares *every* discovered manifest with it before running anything:
- a name never seen before is a phantom agent (critical), unless this is the very first start;
- a changed hash is drift (critical), reported once, then accepted;
- a manifest that fails to load is recorded as `manifest_invalid`, once per distinct content.

Beyond upstream: when the cache has vanished while the audit log has history, that is itself
critical (`manifest_cache_missing`), and the last known hashes are rebuilt from the audit log,
so deleting the cache does not launder a phantom or a drift. A cache that exists but cannot be
read (garbage, not JSON, the wrong shape, not a regular file) is treated the same way, and
reported as unreadable with the reason — never as a first start: something wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.audit import AuditLog, events
from dotagent.boundedread import NotRegularFile, TooLarge, read_bounded
from dotagent.discovery import Discovery
from dotagent.errors import StateError
from dotagent.filelock import locked
from dotagent.paths import Home
from dotagent.timefmt import iso

__all__ = ["CACHE_FILE", "MISSING", "CacheReport", "Drift", "check_manifests", "load_cache",
           "recorded_path", "register_created"]

CACHE_FILE = "known_manifests.json"
MISSING = "does not exist"
_MAX_CACHE = 64 * 1024 * 1024  # far beyond any real cache; bounds what a garbage file costs


@dataclass(frozen=True)
class Drift:
    agent: str
    path: str
    expected_sha256: str
    actual_sha256: str


@dataclass
class CacheReport:
    baseline: list[str] = field(default_factory=list)  # first start: recorded, not phantom
    phantoms: list[str] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # paths newly reported invalid
    # When the cache is gone or unreadable (and that is suspicious): what is wrong with it, as
    # one phrase naming the file ("…/known_manifests.json is unreadable: not valid JSON (…)").
    cache_missing: str | None = None
    history_deleted: bool = False  # the cache knows agents but the audit log is empty
    # doctor only (update=False): why the audit log could not be read; judged without it.
    audit_unreadable: str | None = None


def _cache_path(home: Home) -> Path:
    return home.state_dir / CACHE_FILE


def load_cache(home: Home) -> tuple[dict[str, Any] | None, str | None]:
    """(cache, problem). cache is None when the file is missing (problem == MISSING) or
    unreadable (problem == "unreadable: <why>")."""
    path = _cache_path(home)
    try:
        # Bounded and non-blocking: a FIFO in its place must not hang every run.
        raw = read_bounded(path, _MAX_CACHE, follow_links=False)
    except FileNotFoundError:
        return None, MISSING
    except NotRegularFile:
        return None, "unreadable: it is not a regular file"
    except TooLarge:
        return None, f"unreadable: larger than {_MAX_CACHE // (1024 * 1024)} MiB"
    except OSError as exc:
        return None, f"unreadable: cannot read it: {exc.strerror or exc}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "unreadable: not UTF-8 text"
    except ValueError as exc:
        return None, f"unreadable: not valid JSON ({exc})"
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        return None, "unreadable: not a known_manifests.json document (no \"entries\" object)"
    return data, None


def _from_audit(log: AuditLog) -> dict[str, dict[str, Any]]:
    """Last known (path, sha256) per agent, from manifest events in the audit log: every
    rotated segment along the seams, oldest first, then the live file."""
    entries: dict[str, dict[str, Any]] = {}
    for _segment, fh in log.readers():
        for raw in fh:
            if b'"manifest_' not in raw and b'"phantom_agent' not in raw:
                continue
            try:
                event = json.loads(raw)["event"]
            except (ValueError, KeyError, TypeError):
                continue
            kind = event.get("event_type")
            sha = event.get("actual_sha256") if kind == "manifest_drift_detected" else \
                event.get("sha256")
            if kind in ("manifest_loaded", "manifest_drift_detected", "phantom_agent_detected") \
                    and isinstance(event.get("agent"), str) and isinstance(sha, str):
                entries[event["agent"]] = {"path": event.get("path", ""), "sha256": sha}
    return entries


def _history(log: AuditLog, report: CacheReport, update: bool) -> dict[str, dict[str, Any]]:
    """_from_audit(); a read-only check (doctor) that cannot read the log goes on without it
    and says why, instead of failing: recording commands fail on the same log anyway."""
    try:
        return _from_audit(log)
    except StateError as exc:
        if update:
            raise
        report.audit_unreadable = exc.message
        return {}


def _entry_count(log: AuditLog, report: CacheReport, update: bool) -> int | None:
    try:
        return log.current_head()[0]
    except StateError as exc:
        if update:
            raise
        report.audit_unreadable = exc.message
        return None


def check_manifests(home: Home, found: Discovery, now: datetime, *,
                    audit: AuditLog | None = None, update: bool = True) -> CacheReport:
    """Compare every discovered manifest with the cache; audit and (if `update`) save.

    Updating holds `state/known_manifests.lock` from reading the cache to saving it, so
    concurrent commands report a drift or a phantom once. With `update=False` (doctor),
    nothing is written anywhere.
    """
    if not update:
        return _check(home, found, now, audit, update=False)
    with locked(home.state_dir / "known_manifests.lock"):
        return _check(home, found, now, audit, update=True)


def _check(home: Home, found: Discovery, now: datetime, audit: AuditLog | None, *,
           update: bool) -> CacheReport:
    report = CacheReport()
    cache, problem = load_cache(home)
    log = audit or AuditLog(home)
    first_start = False
    reason = ""
    if cache is None:
        # "History" means the log has seen manifests before; any other entry (a selfcheck,
        # a verify) does not make a first start suspicious. A cache that exists but cannot
        # be read is suspicious in any case: something wrote it, so this is no first start.
        remembered = _history(log, report, update)
        cache = {"entries": {}}
        shown = f"{_cache_path(home)} is {'missing' if problem == MISSING else problem}"
        if remembered:
            report.cache_missing = shown
            reason = (f"{problem} while the audit log has history; last known hashes were "
                      "rebuilt from the audit log")
            cache["entries"] = {name: {**info, "first_seen_at_iso": None,
                                       "last_seen_at_iso": None}
                                for name, info in remembered.items()}
        elif problem != MISSING:
            report.cache_missing = shown
            reason = (f"{problem}; the audit log holds no manifest history to rebuild it "
                      "from, so every agent is reported as never seen before")
        else:
            first_start = True
    entries: dict[str, dict[str, Any]] = cache["entries"]
    invalid: dict[str, str] = dict(cache.get("invalid") or {})
    pending: list[events.Event] = []
    if report.cache_missing is not None:
        pending.append(events.ManifestCacheMissing(path=str(_cache_path(home)), reason=reason))
    if entries and report.cache_missing is None and not first_start and \
            _entry_count(log, report, update) == 0:
        # The mirror image of a vanished cache: the cache remembers agents, so there was a
        # history, and the log that held it is gone or empty.
        report.history_deleted = True
        # The audit layer records this deletion itself when its head record (or the copy)
        # still vouches for entries: one event, one break. Only when it cannot tell (head
        # and copy gone too) is the cache the evidence. Checking an empty log costs nothing.
        if not update or not log.verify().breaks:
            pending.append(events.AuditChainBroken(
                position=0, expected_prev_hash="", actual_prev_hash="GENESIS",
                kind="truncation", line=1,
                detail=f"audit.log is missing or empty although {_cache_path(home).name} "
                       f"already records {len(entries)} agent(s): its history was deleted"))
    stamp = iso(now)
    changed = report.cache_missing is not None or (first_start and bool(found.agents))

    for name, loaded in found.agents.items():
        path, sha = recorded_path(loaded.path), loaded.sha256
        known = entries.get(name)
        if known is None:
            if first_start:
                report.baseline.append(name)
            else:
                report.phantoms.append(name)
                pending.append(events.PhantomAgentDetected(agent=name, path=path, sha256=sha))
            pending.append(events.ManifestLoaded(agent=name, path=path, sha256=sha))
            entries[name] = {"path": path, "sha256": sha, "first_seen_at_iso": stamp,
                             "last_seen_at_iso": stamp}
            changed = True
        elif known.get("sha256") != sha:
            drift = Drift(name, path, str(known.get("sha256", "")), sha)
            report.drifts.append(drift)
            pending.append(events.ManifestDriftDetected(
                agent=name, path=path, expected_sha256=drift.expected_sha256,
                actual_sha256=sha))
            known.update(path=path, sha256=sha, last_seen_at_iso=stamp)
            known.setdefault("first_seen_at_iso", stamp)
            changed = True
        else:
            known["last_seen_at_iso"] = stamp  # saved only with another change (upstream)

    for shown, sha, error, agent in _invalid_manifests(found):
        path = recorded_path(shown)
        if invalid.get(path) != sha:
            invalid[path] = sha
            report.invalid.append(shown)
            pending.append(events.ManifestInvalid(path=path, error=error, agent=agent))
            changed = True

    if not update:
        return report
    for event in pending:
        log.append(event, now=now)
    if changed:
        out: dict[str, Any] = {"entries": dict(sorted(entries.items()))}
        if invalid:
            out["invalid"] = dict(sorted(invalid.items()))
        write_json_atomic(_cache_path(home), out)
    return report


def register_created(home: Home, name: str, path: Path, sha256: str, now: datetime, *,
                     audit: AuditLog | None = None) -> bool:
    """Record a manifest that dotagent itself just created (`dotagent init`) as known, so
    that the next check does not report the user's own new agent as a phantom (nor, for a
    name seen before, as drift). Audited as `manifest_loaded`, as any manifest first seen.

    Only when the cache can be read: without one, the next check is a first start (nothing
    to do) or reports the missing cache itself, which must not be papered over. Returns
    whether the cache was changed."""
    if load_cache(home)[0] is None:
        return False
    with locked(home.state_dir / "known_manifests.lock"):
        cache, _problem = load_cache(home)
        if cache is None:
            return False
        entries: dict[str, dict[str, Any]] = cache["entries"]
        shown = recorded_path(path)
        known = entries.get(name)
        if known is not None and known.get("sha256") == sha256:
            return False
        stamp = iso(now)
        first_seen = known.get("first_seen_at_iso") if known else None
        entries[name] = {"path": shown, "sha256": sha256,
                         "first_seen_at_iso": first_seen or stamp, "last_seen_at_iso": stamp}
        (audit or AuditLog(home)).append(
            events.ManifestLoaded(agent=name, path=shown, sha256=sha256), now=now)
        cache["entries"] = dict(sorted(entries.items()))
        write_json_atomic(_cache_path(home), cache)
    return True


def recorded_path(path: Path | str) -> str:
    """The manifest's path as the cache and the audit log record it: resolved through
    symlinks, so that an alias (`agents/aaa -> ok`) or a renamed link leaves one stable path
    per manifest. Messages show the path as found."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return str(path)


def _invalid_manifests(found: Discovery) -> Iterator[tuple[str, str, str, str | None]]:
    for failure in found.failures:
        error = "; ".join(str(p) for p in failure.errors) or "failed to load"
        yield str(failure.path), failure.sha256, error, failure.declared_name
    for dup in found.duplicates:
        yield (str(dup.path), dup.sha256, f"agent.name is already used by {dup.owner}; ignored",
               dup.name)
