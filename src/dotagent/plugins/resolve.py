"""Where a plugin binary is found (SPEC S4.1 with S14.11 and S14.27 applied).

Search order: each `$DOTAGENT_PLUGIN_PATH` entry → `$DOTAGENT_HOME/plugins` →
`~/.config/dotagent/plugins` (upstream's directory, when it differs) →
`/usr/local/lib/dotagent/plugins` → each `$PATH` entry. The first regular file named
`dotagent-plugin-<name>` wins; its exec bit is not checked (upstream), a non-executable file
fails when it is run, with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from dotagent.display import printable
from dotagent.paths import resolve_home

__all__ = ["PLUGIN_PREFIX", "SYSTEM_PLUGIN_DIR", "binary_name", "iter_installed",
           "not_found_message", "plugin_search_dirs", "resolve_plugin"]

PLUGIN_PREFIX = "dotagent-plugin-"
SYSTEM_PLUGIN_DIR = Path("/usr/local/lib/dotagent/plugins")


def binary_name(name: str) -> str:
    return f"{PLUGIN_PREFIX}{name}"


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
    if not name or "/" in name or name in (".", ".."):
        return None
    for directory in plugin_search_dirs(env):
        candidate = directory / binary_name(name)
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue
    return None


def not_found_message(name: str, env: Mapping[str, str] | None = None) -> str:
    """`plugin not found: <name>` (upstream's words) and where we looked (S14.11)."""
    env = os.environ if env is None else env
    dirs = ", ".join(str(d) for d in plugin_search_dirs({**env, "PATH": ""}))
    shown = printable(name)  # a name from a command line may hold escapes or newlines
    return (f"plugin not found: {shown} (no {binary_name(shown)} in {dirs} or on PATH)")


def iter_installed(env: Mapping[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """(name, path) of every `dotagent-plugin-*` regular file on the search path; a name
    shadowed by an earlier directory is given once, at the path that wins."""
    seen: set[str] = set()
    for directory in plugin_search_dirs(env):
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue
        for entry in entries:
            if not entry.startswith(PLUGIN_PREFIX) or len(entry) == len(PLUGIN_PREFIX):
                continue
            name = entry[len(PLUGIN_PREFIX):]
            if name in seen:
                continue
            try:
                if not (directory / entry).is_file():
                    continue
            except OSError:
                continue
            seen.add(name)
            yield name, directory / entry
