"""The daemon's agents as `status`, `inspect` and `next` see them: plain views of the
manifests (no pydantic models), found the way the daemon finds them (S15.8: `$DOTAGENT_ROOT`
and `$DOTAGENT_HOME/agents`, never the current directory).

Loading 500 manifests costs about 0.3 s (pydantic's import and model building, then TOML);
`status` must answer in less. So the views of the last full discovery are kept in
`state/api-agents.json` (private), keyed by the search roots, the jitter salt, dotagent's
version and each candidate `agent.toml`'s (device, inode, size, mtime, ctime): while nothing
of that changed, the views are read back from there and no manifest is parsed. Any change —
a manifest edited, added, removed, renamed, a root added — means one full discovery, whose
result replaces the file. The file is only a cache: unreadable, foreign, stale or damaged (its
first line holds the sha256 of the rest), it is
ignored; one that cannot be written is not an error (docs/decisions.md, "status keeps a
cache of the discovered manifests").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotagent import __version__
from dotagent.paths import Home
from dotagent.schedule.windows import ExitPolicy, Policy

if TYPE_CHECKING:
    from dotagent.discovery import Discovery
    from dotagent.manifest import LoadedManifest

__all__ = ["CACHE_FILE", "AgentSet", "AgentView", "ScheduleView", "load_agents", "view_of"]

CACHE_FILE = "api-agents.json"
_CACHE_VERSION = 3  # 3: a header line with the body's sha256
_MAX_CACHE = 64 * 1024 * 1024


@dataclass(frozen=True)
class ScheduleView:
    """One schedule, with the attributes `schedule.rules.rule_for` reads and the effective
    policy (`Manifest.policy`: schedule, then `[defaults]`, then the fallback, clamped)."""

    id: str
    slug: str
    type: str  # cron | interval | expression
    args: tuple[str, ...]
    policy: Policy
    jitter_seconds: int = 0
    expression: str | None = None  # as written (type expression)
    interval_minutes: int | None = None
    weekdays: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    minute: int = 0
    timezone: str | None = None

    @property
    def shown(self) -> str:
        """The schedule as one line: the OnCalendar expression (a cron set's equivalent), or
        `every N min`."""
        if self.type == "interval":
            return f"every {self.interval_minutes} min"
        if self.type == "cron":
            from dotagent.schedule.rules import cron_expression

            return cron_expression(self.weekdays, self.hours, self.minute)
        return self.expression or ""

    def to_cache(self) -> dict[str, Any]:
        p = self.policy
        return {"id": self.id, "slug": self.slug, "type": self.type, "args": list(self.args),
                "jitter_seconds": self.jitter_seconds, "expression": self.expression,
                "interval_minutes": self.interval_minutes, "weekdays": list(self.weekdays),
                "hours": list(self.hours), "minute": self.minute, "timezone": self.timezone,
                "policy": {"max_retries": p.max_retries,
                           "retry_backoff_minutes": list(p.retry_backoff_minutes),
                           "retry_backoff_seconds": list(p.retry_backoff_seconds),
                           "stale_after_minutes": p.stale_after_minutes,
                           "success_exit_codes": sorted(p.exits.success_exit_codes),
                           "no_retry_exit_codes": sorted(p.exits.no_retry_exit_codes),
                           "delay_us": p.delay // timedelta(microseconds=1)}}

    @classmethod
    def from_cache(cls, d: dict[str, Any]) -> ScheduleView:
        p = d["policy"]
        policy = Policy(max_retries=p["max_retries"],
                        retry_backoff_minutes=tuple(p["retry_backoff_minutes"]),
                        retry_backoff_seconds=tuple(p.get("retry_backoff_seconds") or ()),
                        stale_after_minutes=p["stale_after_minutes"],
                        exits=ExitPolicy(frozenset(p["success_exit_codes"]),
                                         frozenset(p["no_retry_exit_codes"])),
                        delay=timedelta(microseconds=p["delay_us"]))
        return cls(id=d["id"], slug=d["slug"], type=d["type"], args=tuple(d["args"]),
                   policy=policy, jitter_seconds=d["jitter_seconds"],
                   expression=d["expression"], interval_minutes=d["interval_minutes"],
                   weekdays=tuple(d["weekdays"]), hours=tuple(d["hours"]),
                   minute=d["minute"], timezone=d["timezone"])


@dataclass(frozen=True)
class AgentView:
    name: str
    path: str  # agent.toml as discovered
    sha256: str
    monitor: bool
    timeout_seconds: int
    schedules: tuple[ScheduleView, ...]
    description: str | None = None
    # (field, declared, effective) for every value raised or lowered to a limit (V7).
    clamps: tuple[tuple[str, Any, Any], ...] = ()

    def to_cache(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256,
                "monitor": self.monitor, "timeout_seconds": self.timeout_seconds,
                "description": self.description,
                "clamps": [list(c) for c in self.clamps],
                "schedules": [s.to_cache() for s in self.schedules]}

    @classmethod
    def from_cache(cls, d: dict[str, Any]) -> AgentView:
        return cls(name=d["name"], path=d["path"], sha256=d["sha256"], monitor=d["monitor"],
                   timeout_seconds=d["timeout_seconds"], description=d["description"],
                   clamps=tuple((c[0], c[1], c[2]) for c in d["clamps"]),
                   schedules=tuple(ScheduleView.from_cache(s) for s in d["schedules"]))


@dataclass
class AgentSet:
    """What discovery found: agents by name in discovery order, and every manifest problem
    (broken manifests, duplicate names) as `Problem.to_json()` dicts."""

    agents: dict[str, AgentView] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    from_cache: bool = False


def view_of(loaded: LoadedManifest, salt: bytes) -> AgentView:
    m = loaded.manifest
    schedules = []
    for s in m.schedules:
        common: dict[str, Any] = {"id": s.id, "slug": s.slug, "type": s.type,
                                  "args": tuple(s.args), "policy": m.policy(s, salt=salt),
                                  "jitter_seconds": m.jitter_seconds(s)}
        if s.type == "interval":
            common["interval_minutes"] = s.interval_minutes
        elif s.type == "cron":
            common.update(weekdays=tuple(s.weekdays), hours=tuple(s.hours), minute=s.minute,
                          timezone=s.timezone)
        else:
            common.update(expression=s.expression, timezone=s.timezone)
        schedules.append(ScheduleView(**common))
    return AgentView(name=m.agent.name, path=str(loaded.path), sha256=loaded.sha256,
                     monitor=m.agent.monitor, timeout_seconds=m.agent.timeout_seconds,
                     description=m.agent.description, schedules=tuple(schedules),
                     clamps=tuple((c.field, _plain(c.declared), _plain(c.effective))
                                  for c in loaded.clamps))


def _plain(value: Any) -> Any:
    """A clamp's value as JSON can hold it."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def views_of(found: Discovery, salt: bytes) -> AgentSet:
    return AgentSet(agents={name: view_of(loaded, salt) for name, loaded in found.agents.items()},
                    problems=[p.to_json() for p in found.errors()])


# --------------------------------------------------------------------------------------
# Loading, through the cache
# --------------------------------------------------------------------------------------
def _signature(env: Mapping[str, str], home: Home, salt: bytes) -> dict[str, Any]:
    """What the cached views depend on: the roots, every candidate manifest's identity."""
    from dotagent.discovery import candidates, search_roots

    roots = search_roots(env, include_cwd=False)
    files: list[list[Any]] = []
    for root in roots:
        for path in candidates(root):
            try:
                st = os.stat(path)
                files.append([str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                              st.st_ctime_ns])
            except OSError as exc:
                files.append([str(path), type(exc).__name__])
    return {"version": _CACHE_VERSION, "dotagent": __version__, "home": str(home.root),
            "salt": hashlib.sha256(salt).hexdigest(), "roots": [str(r) for r in roots],
            "files": files}


def _read_cache(path: Path, signature: dict[str, Any]) -> AgentSet | None:
    """The cached views when the file is ours, current and intact: its first line holds the
    signature and the sha256 of the rest, so a damaged or edited body is a miss, never views
    that break the commands reading them."""
    from dotagent.boundedread import read_bounded

    try:
        head, _, body = read_bounded(path, _MAX_CACHE, follow_links=False).partition(b"\n")
        header = json.loads(head)
        if not isinstance(header, dict) or header.get("signature") != signature \
                or header.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        data = json.loads(body)
        return AgentSet(agents={a["name"]: AgentView.from_cache(a) for a in data["agents"]},
                        problems=list(data["problems"]), from_cache=True)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _write_cache(path: Path, signature: dict[str, Any], agents: AgentSet) -> None:
    from dotagent.atomicfile import write_atomic
    from dotagent.errors import DotagentError

    if not path.parent.is_dir():
        return  # a read command does not create the state directory
    # Only a cache: one that cannot be written is discovered again next time.
    with contextlib.suppress(OSError, DotagentError, TypeError, ValueError):
        body = json.dumps({"agents": [a.to_cache() for a in agents.agents.values()],
                           "problems": agents.problems},
                          ensure_ascii=False).encode("utf-8", errors="backslashreplace")
        header = json.dumps({"signature": signature,
                             "sha256": hashlib.sha256(body).hexdigest()},
                            ensure_ascii=False).encode("utf-8", errors="backslashreplace")
        write_atomic(path, header + b"\n" + body)


def load_agents(home: Home, env: Mapping[str, str], *, use_cache: bool = True) -> AgentSet:
    """The daemon's agents (discovery with `include_cwd=False`), through the cache."""
    from dotagent.machineid import jitter_salt

    salt = jitter_salt(home)
    path = home.state_dir / CACHE_FILE
    signature = _signature(env, home, salt) if use_cache else None
    if signature is not None:
        cached = _read_cache(path, signature)
        if cached is not None:
            return cached
    from dotagent.discovery import discover

    agents = views_of(discover(dict(env), include_cwd=False), salt)
    if signature is not None:
        # Discovery read the files after the signature was taken: if one changed meanwhile,
        # the signature no longer matches it, and the next command discovers again.
        _write_cache(path, signature, agents)
    return agents
