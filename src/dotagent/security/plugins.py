"""The plugin hash registry (threat model V4): `state/known_plugins.json` holds the resolved
path and sha256 of every plugin binary a manifest references. A binary whose content changed
since it was first seen is `plugin_drift_detected` (critical), reported once, then accepted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.audit import AuditLog, events
from dotagent.boundedread import NotRegularFile, read_bounded
from dotagent.discovery import Discovery
from dotagent.display import printable
from dotagent.filehash import sha256_file
from dotagent.filelock import locked
from dotagent.manifest import Manifest, PluginNotifier
from dotagent.paths import Home
from dotagent.plugins.resolve import resolve_plugin
from dotagent.timefmt import iso

__all__ = ["REGISTRY_FILE", "PluginReport", "PluginStatus", "check_plugins",
           "read_registry", "referenced_plugins"]

REGISTRY_FILE = "known_plugins.json"


def plugin_fields(manifest: Manifest) -> list[tuple[str, str]]:
    """(field path, plugin name) for every place a manifest names a plugin."""
    out: list[tuple[str, str]] = []
    for section in ("preflight", "on_success", "on_failure"):
        for i, ref in enumerate(getattr(manifest, section)):
            out.append((f"{section}[{i}].plugin", ref.plugin))
    for i, notifier in enumerate(manifest.notifiers):
        if isinstance(notifier, PluginNotifier):
            out.append((f"notifiers[{i}].name", notifier.name))
    return out


def referenced_plugins(manifest: Manifest) -> list[str]:
    """Every plugin name a manifest uses, in first-use order."""
    return list(dict.fromkeys(name for _, name in plugin_fields(manifest)))


@dataclass(frozen=True)
class PluginStatus:
    name: str
    path: Path | None
    sha256: str | None
    known_sha256: str | None  # what the registry held before this check

    @property
    def drifted(self) -> bool:
        return self.sha256 is not None and self.known_sha256 not in (None, self.sha256)


@dataclass
class PluginReport:
    plugins: dict[str, PluginStatus] = field(default_factory=dict)
    # The registry exists but cannot be used (not a regular file, not JSON): one phrase.
    registry_problem: str | None = None

    @property
    def drifts(self) -> list[PluginStatus]:
        return [p for p in self.plugins.values() if p.drifted]

    @property
    def missing(self) -> list[str]:
        return [p.name for p in self.plugins.values() if p.path is None]


def _load(path: Path) -> tuple[dict[str, Any], str | None]:
    """(entries, problem): the registry, or {} with why it cannot be used (None when it is
    just missing). Read bounded and without blocking: a FIFO in its place is unreadable."""
    try:
        data = json.loads(read_bounded(path, follow_links=False))
    except FileNotFoundError:
        return {}, None
    except NotRegularFile as exc:
        return {}, f"it is {exc.kind}, not a regular file"
    except OSError as exc:
        return {}, f"cannot read it: {exc.strerror or exc}"
    except ValueError as exc:  # UnicodeDecodeError included
        return {}, f"not valid JSON ({exc})"
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}, 'not a known_plugins.json document (no "entries" object)'
    return entries, None


def read_registry(home: Home) -> tuple[dict[str, Any], str | None]:
    """known_plugins.json's entries (name -> {path, sha256, …}), read-only, and why it
    cannot be used (None when fine or absent)."""
    return _load(home.state_dir / REGISTRY_FILE)


def check_plugins(home: Home, found: Discovery, now: datetime, *,
                  env: Mapping[str, str] | None = None, audit: AuditLog | None = None,
                  update: bool = True) -> PluginReport:
    """Hash every referenced plugin and compare with the registry (under its lock when
    updating, so concurrent commands report a swap once)."""
    if not update:
        return _check(home, found, now, env, audit, update=False)
    with locked(home.state_dir / "known_plugins.lock"):
        return _check(home, found, now, env, audit, update=True)


def _check(home: Home, found: Discovery, now: datetime, env: Mapping[str, str] | None,
           audit: AuditLog | None, *, update: bool) -> PluginReport:
    env = os.environ if env is None else env
    registry_path = home.state_dir / REGISTRY_FILE
    entries, problem = _load(registry_path)
    report = PluginReport()
    if problem is not None:
        report.registry_problem = (f"{printable(str(registry_path))} is unreadable: {problem}; "
                                   "every plugin is treated as first seen")
    stamp = iso(now)
    names = sorted({n for loaded in found.agents.values()
                    for n in referenced_plugins(loaded.manifest)})
    pending: list[events.Event] = []
    changed = False
    for name in names:
        path = resolve_plugin(name, env)
        known = entries.get(name) if isinstance(entries.get(name), dict) else None
        known_sha = known.get("sha256") if known else None
        sha = None
        if path is not None:
            try:
                sha = sha256_file(path)
            except OSError:
                sha = None
        status = PluginStatus(name, path, sha, known_sha)
        report.plugins[name] = status
        if sha is None or path is None:
            continue
        if known is None:
            entries[name] = {"path": str(path), "sha256": sha, "first_seen_at_iso": stamp,
                             "last_seen_at_iso": stamp}
            changed = True
        elif status.drifted:
            pending.append(events.PluginDriftDetected(
                plugin=name, path=str(path), expected_sha256=str(known_sha),
                actual_sha256=sha))
            known.update(path=str(path), sha256=sha, last_seen_at_iso=stamp)
            changed = True
        elif known.get("path") != str(path):
            known.update(path=str(path), last_seen_at_iso=stamp)  # same bytes, moved
            changed = True
    if update:
        log = audit or AuditLog(home)
        for event in pending:
            log.append(event, now=now)
        if changed:
            write_json_atomic(registry_path, {"entries": dict(sorted(entries.items()))})
    return report
