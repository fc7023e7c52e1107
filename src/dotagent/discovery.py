"""Where manifests are found (SPEC S1.5, with S14.3 and S14.15 applied).

Roots, in order: each entry of `$DOTAGENT_ROOT` (colon-separated), `$DOTAGENT_HOME/agents`,
`./agents`, `./`. In each root every direct child directory holding a regular-file
`agent.toml` is a candidate. Beyond upstream:
- children are visited in sorted order, so "first wins" is the same on every machine;
- the same file reached through two roots is one manifest (dedupe by resolved path);
- a second manifest claiming a taken name is an error naming both paths; the first keeps working;
- a manifest that fails to load is reported and never stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotagent.manifest import LoadedManifest, LoadResult, Problem, load_manifest
from dotagent.paths import resolve_home

__all__ = ["Discovery", "Duplicate", "discover", "plugin_search_dirs", "resolve_plugin",
           "search_roots"]

MANIFEST_NAME = "agent.toml"


def search_roots(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    # Relative entries are taken from the current directory once, so AGENT_HOME and the
    # paths recorded in state are absolute.
    roots = [cwd / p for p in env.get("DOTAGENT_ROOT", "").split(os.pathsep) if p]
    roots.append(resolve_home(env) / "agents")
    roots.append(cwd / "agents")
    roots.append(cwd)
    return roots


@dataclass(frozen=True)
class Duplicate:
    """A manifest claiming a name that an earlier manifest already owns."""

    path: Path
    owner: Path
    name: str
    line: int | None  # of agent.name in `path`
    sha256: str


@dataclass
class Discovery:
    """What one scan found: loaded agents by name (in discovery order) and every failure."""

    agents: dict[str, LoadedManifest] = field(default_factory=dict)
    failures: list[LoadResult] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)

    def errors(self) -> list[Problem]:
        out = [p for f in self.failures for p in f.errors]
        for dup in self.duplicates:
            out.append(Problem(str(dup.path), dup.line, "agent.name",
                               f"{dup.name!r} is already used by {dup.owner}, which keeps "
                               "running; this manifest is ignored until one is renamed"))
        return out

    def get(self, name: str) -> LoadedManifest | None:
        return self.agents.get(name)


def _candidates(root: Path) -> list[Path]:
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


def discover(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Discovery:
    result = Discovery(roots=search_roots(env, cwd))
    seen_files: set[Path] = set()
    owner: dict[str, Path] = {}
    for root in result.roots:
        for path in _candidates(root):
            try:
                real = path.resolve()
            except OSError:
                real = path
            if real in seen_files:
                continue
            seen_files.add(real)
            loaded = load_manifest(path)
            if not loaded.ok:
                result.failures.append(loaded)
                continue
            manifest = loaded.loaded()
            if manifest.name in owner:
                result.duplicates.append(Duplicate(path, owner[manifest.name], manifest.name,
                                                   manifest.line_of("agent.name"),
                                                   manifest.sha256))
                continue
            owner[manifest.name] = path
            result.agents[manifest.name] = manifest
    return result


# --------------------------------------------------------------------------------------
# Plugin binaries (S14.27)
# --------------------------------------------------------------------------------------
PLUGIN_PREFIX = "dotagent-plugin-"
SYSTEM_PLUGIN_DIR = Path("/usr/local/lib/dotagent/plugins")


def plugin_search_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """`$DOTAGENT_PLUGIN_PATH` → `$DOTAGENT_HOME/plugins` → `~/.config/dotagent/plugins`
    (when different) → `/usr/local/lib/dotagent/plugins` → `$PATH`."""
    env = os.environ if env is None else env
    dirs = [Path(p) for p in env.get("DOTAGENT_PLUGIN_PATH", "").split(os.pathsep) if p]
    home_plugins = resolve_home(env) / "plugins"
    dirs.append(home_plugins)
    if env.get("HOME"):
        upstream = Path(env["HOME"]) / ".config" / "dotagent" / "plugins"
        if upstream != home_plugins:
            dirs.append(upstream)
    dirs.append(SYSTEM_PLUGIN_DIR)
    dirs.extend(Path(p) for p in env.get("PATH", "").split(os.pathsep) if p)
    return dirs


def resolve_plugin(name: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The first regular file named `dotagent-plugin-<name>` on the search path."""
    for directory in plugin_search_dirs(env):
        candidate = directory / f"{PLUGIN_PREFIX}{name}"
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue
    return None
