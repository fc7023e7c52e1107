"""Where manifests are found (SPEC S1.5, with S14.3, S14.15 and S15.8 applied).

Roots, in order: each entry of `$DOTAGENT_ROOT` (colon-separated), `$DOTAGENT_HOME/agents`,
and — only for the interactive commands `run` and `doctor` (`include_cwd=True`) — `./agents`
and `./`. The daemon and every command about the daemon's agents pass `include_cwd=False`.
In each root every direct child directory holding an `agent.toml` is a candidate. Beyond
upstream:
- children are visited in sorted order, so "first wins" is the same on every machine;
- a root reached twice (`$DOTAGENT_ROOT` naming the home's agents, a current directory that
  is one of the roots) is searched once, and the same file reached through two roots is one
  manifest (dedupe by resolved path);
- a name is *claimed* by the first manifest that declares it, valid or not; when a manifest's
  name cannot be read at all (TOML syntax error, no `agent.name`, not a string) its directory
  name claims it. A later manifest declaring a claimed name — valid or not — is a duplicate,
  an error naming both paths, and is never served: a broken manifest's name is refused with
  its own errors, not handed to someone else's manifest;
- a manifest that fails to load is reported and never stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dotagent.display import quote_name
from dotagent.paths import resolve_home

if TYPE_CHECKING:
    # Imported where they are used: `manifest` brings pydantic, and `search_roots` /
    # `candidates` (what `dotagent.api` checks its cache against) need none of it.
    from dotagent.manifest import LoadedManifest, LoadResult, Problem

__all__ = ["Discovery", "Duplicate", "candidates", "claimed_name", "discover", "search_roots"]

MANIFEST_NAME = "agent.toml"


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def search_roots(env: Mapping[str, str] | None = None, cwd: Path | None = None, *,
                 include_cwd: bool) -> list[Path]:
    """The roots in search order, each once. `include_cwd` adds `./agents` and `./` — only
    `run` and `doctor` do that (S15.8)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    # Relative entries are taken from the current directory once, so AGENT_HOME and the
    # paths recorded in state are absolute.
    roots = [cwd / p for p in env.get("DOTAGENT_ROOT", "").split(os.pathsep) if p]
    roots.append(resolve_home(env) / "agents")
    if include_cwd:
        roots.append(cwd / "agents")
        roots.append(cwd)
    seen: set[Path] = set()
    unique = []
    for root in roots:
        real = _real(root)
        if real not in seen:
            seen.add(real)
            unique.append(root)
    return unique


def claimed_name(result: LoadResult) -> str:
    """The name a manifest holds: `agent.name` as written when it is a string, else (the name
    cannot be read at all) the name of its directory."""
    if result.manifest is not None and not result.errors:
        return result.manifest.name
    return result.declared_name if result.declared_name is not None else result.path.parent.name


@dataclass(frozen=True)
class Duplicate:
    """A manifest declaring a name that an earlier manifest (valid or not) already claims."""

    path: Path
    owner: Path
    name: str
    line: int | None  # of agent.name in `path`; None when its directory name is what collides
    sha256: str
    owner_broken: bool = False  # the claimant has errors, so neither runs
    by_directory: bool = False  # its own name cannot be read; its directory name collides
    errors: tuple[Problem, ...] = ()  # its own load errors, when it is broken as well
    warnings: tuple[Problem, ...] = ()

    def problem(self) -> Problem:
        from dotagent.manifest import Problem

        what = f"its directory name {quote_name(self.name)}" if self.by_directory else \
            quote_name(self.name)
        if self.owner_broken:
            tail = ("which has errors: that agent is refused, and this manifest is ignored, "
                    "until that one is fixed or one of them is renamed")
        else:
            tail = "which keeps running; this manifest is ignored until one is renamed"
        return Problem(str(self.path), self.line, "agent.name",
                       f"{what} is already used by {self.owner}, {tail}")


@dataclass
class Discovery:
    """What one scan found: loaded agents by name (in discovery order) and every failure."""

    agents: dict[str, LoadedManifest] = field(default_factory=dict)
    # Manifests that failed to load and hold their name (a broken duplicate is in
    # `duplicates` instead, with its own errors).
    failures: list[LoadResult] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    # The roots the daemon searches too (every root but ./agents and ./).
    daemon_roots: list[Path] = field(default_factory=list)
    broken: dict[str, LoadResult] = field(default_factory=dict)  # claimed name -> failure
    origin: dict[Path, Path] = field(default_factory=dict)  # manifest path -> its root

    def errors(self) -> list[Problem]:
        out = [p for f in self.failures for p in f.errors]
        for dup in self.duplicates:
            out.extend(dup.errors)
            out.append(dup.problem())
        return out

    def get(self, name: str) -> LoadedManifest | None:
        return self.agents.get(name)

    def broken_claim(self, name: str) -> LoadResult | None:
        """The manifest that claims `name` but has errors, if that is what holds the name.
        Such a name is refused, with that manifest's errors, by every command."""
        return self.broken.get(name)

    def require(self, name: str) -> LoadedManifest:
        """The loaded agent called `name`. NotFoundError when nothing claims the name;
        ConfigError, with that manifest's own errors, when the manifest that claims it is
        broken — never a later manifest of the same name (S15.8)."""
        from dotagent.display import printable
        from dotagent.errors import ConfigError, NotFoundError

        loaded = self.agents.get(name)
        if loaded is not None:
            return loaded
        broken = self.broken_claim(name)
        if broken is not None:
            lines = [f"agent {quote_name(name)} cannot be used: its manifest "
                     f"{printable(str(broken.path))} has {len(broken.errors)} error(s):"]
            lines.extend(f"  {p}" for p in broken.errors)
            for dup in self.duplicates_of(name):
                lines.append(f"  ({printable(str(dup.path))} declares the same name and is "
                             "ignored while this one holds it)")
            raise ConfigError("\n".join(lines))
        known = ", ".join(quote_name(n) for n in sorted(self.agents)) or "none"
        hint = ""
        if self.failures:
            hint = (f"; {len(self.failures)} manifest(s) failed to load — run `dotagent "
                    "doctor` to see why")
        raise NotFoundError(f"agent not found: {quote_name(name)} (known agents: {known})"
                            f"{hint}")

    def duplicates_of(self, name: str) -> list[Duplicate]:
        return [d for d in self.duplicates if d.name == name]

    def seen_by_daemon(self, path: Path) -> bool:
        """False for a manifest found only through `./agents` or `./`."""
        root = self.origin.get(path)
        return root is None or root in self.daemon_roots


def candidates(root: Path) -> list[Path]:
    """Every `agent.toml` directly under a child directory of `root`. Anything by that name is
    a candidate — a FIFO, a dangling link, a directory — so that it is reported by the loader
    instead of being skipped in silence."""
    try:
        children = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for child in children:
        manifest = Path(child.path) / MANIFEST_NAME
        try:
            if child.is_dir() and os.path.lexists(manifest):
                found.append(manifest)
        except OSError:
            continue
    return found


def discover(env: Mapping[str, str] | None = None, cwd: Path | None = None, *,
             include_cwd: bool) -> Discovery:
    """Scan the roots (see the module docstring). `include_cwd` is True only for `run` and
    `doctor`; the daemon and the commands about its agents pass False (S15.8)."""
    from dotagent.manifest import load_manifest

    result = Discovery(roots=search_roots(env, cwd, include_cwd=include_cwd),
                       daemon_roots=search_roots(env, cwd, include_cwd=False))
    seen_files: set[Path] = set()
    owner: dict[str, Path] = {}
    for root in result.roots:
        for path in candidates(root):
            real = _real(path)
            if real in seen_files:
                continue
            seen_files.add(real)
            result.origin[path] = root
            loaded = load_manifest(path)
            name = claimed_name(loaded)
            if name in owner:
                by_directory = not loaded.ok and loaded.declared_name is None
                line = None if by_directory else _name_line(loaded)
                result.duplicates.append(Duplicate(
                    path, owner[name], name, line, loaded.sha256,
                    owner_broken=name in result.broken, by_directory=by_directory,
                    errors=tuple(loaded.errors), warnings=tuple(loaded.warnings)))
                continue
            owner[name] = path
            if loaded.ok:
                result.agents[name] = loaded.loaded()
            else:
                result.failures.append(loaded)
                result.broken[name] = loaded
    return result


def _name_line(result: LoadResult) -> int | None:
    if result.ok:
        return result.loaded().line_of("agent.name")
    from dotagent._tomllines import LineIndex

    return LineIndex(result.text).line_of(("agent", "name")) if result.text else None
