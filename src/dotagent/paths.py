"""The DOTAGENT_HOME layout, and the only place where user strings become paths.

Every agent name, schedule slug, plugin name or window key that reaches the filesystem goes
through `safe_component` / `Home.join`, so no later code can write outside the state directory.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotagent.errors import UnsafeNameError, UsageError

__all__ = [
    "MAX_NAME_LENGTH",
    "Home",
    "link_inside_home",
    "resolve_home",
    "safe_component",
    "unsafe_reason",
]

MAX_NAME_LENGTH = 64
_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def unsafe_reason(value: str) -> str | None:
    """Why `value` is not a safe single path component, or None when it is."""
    if not value:
        return "must not be empty"
    if value in (".", ".."):
        return f"{value!r} is not allowed"
    if value.startswith("-"):
        # `dotagent run -x` would read it as an option.
        return f"{value!r} starts with '-', which a command line would read as an option"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long (at most {MAX_NAME_LENGTH})"
    if not _SAFE.fullmatch(value):
        bad = sorted({ch for ch in value if not _SAFE.fullmatch(ch)})
        shown = ", ".join(repr(ch) for ch in bad)
        return f"{value!r} contains {shown} (use letters, digits, '-', '_' and '.')"
    return None


def _check_component(part: str) -> None:
    """Looser than `safe_component`: derived file names (slug + suffix) may be long."""
    if part in ("", ".", "..") or "/" in part or "\0" in part or len(part.encode()) > 255:
        raise UnsafeNameError(f"{part!r} is not a safe file name")


def safe_component(value: str, what: str = "name") -> str:
    """Return `value` unchanged if it is a safe path component, else raise UnsafeNameError."""
    reason = unsafe_reason(value)
    if reason is not None:
        raise UnsafeNameError(f"{what} {reason}")
    return value


def resolve_home(env: Mapping[str, str] | None = None) -> Path:
    """`$DOTAGENT_HOME` if set, else `$HOME/.config/dotagent`, else `./.dotagent`.

    A `DOTAGENT_HOME` that is set but empty is a usage error (S15.12): falling back to the
    default home would read and write the real state where a test or script meant another.
    """
    env = os.environ if env is None else env
    explicit = env.get("DOTAGENT_HOME")
    if explicit is not None:
        if not explicit:
            raise UsageError("DOTAGENT_HOME is set but empty: name a directory, or unset it "
                             "to use the default (~/.config/dotagent)")
        return Path(explicit).expanduser().absolute()
    home = env.get("HOME", "")
    if home:
        return Path(home) / ".config" / "dotagent"
    return Path.cwd() / ".dotagent"


# The roots of every Home made in this process. What dotagent writes below one of them may
# not be reached through a symlink (`link_inside_home`); the root itself may be one.
_ROOTS: set[Path] = set()


def link_inside_home(path: Path) -> Path | None:
    """The first component of `path` below a home's root that is a symlink, or None.

    Only paths inside a home (one this process made a `Home` for) are judged, and only the
    components that exist; the root itself is the user's choice and may be a link. Costs one
    lstat per component.
    """
    path = Path(path)
    # The innermost home that holds the path: its root is where the user's choice ends.
    roots = [root for root in _ROOTS if path.is_relative_to(root)]
    if not roots:
        return None
    current = max(roots, key=lambda root: len(root.parts))
    for part in path.relative_to(current).parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return current
        except OSError:  # missing (or unreachable): nothing further exists to follow
            return None
    return None


@dataclass(frozen=True)
class Home:
    """The state directory and the named places inside it."""

    root: Path

    def __post_init__(self) -> None:
        _ROOTS.add(Path(self.root))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Home:
        return cls(resolve_home(env))

    def join(self, *parts: str) -> Path:
        """Join user-supplied components under the home, refusing anything that escapes it."""
        for part in parts:
            _check_component(part)
        path = self.root.joinpath(*parts)
        # Components are already separator-free; this guards against a symlinked parent that
        # would lead elsewhere once resolved.
        if not path.resolve().is_relative_to(self._resolved_root()):
            raise UnsafeNameError(f"{'/'.join(parts)} resolves outside {self.root}")
        return path

    def _resolved_root(self) -> Path:
        """The root with its symlinks resolved: remembered once the directory exists (a run
        joins a dozen paths; resolving the root each time was a third of its CPU)."""
        cached: Path | None = self.__dict__.get("_root_resolved")
        if cached is None:
            cached = self.root.resolve()
            if cached.is_dir():
                self.__dict__["_root_resolved"] = cached
        return cached

    # -- fixed places -----------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    # -- per-agent places (names validated) ----------------------------------------
    def heartbeat_file(self, agent: str, slug: str) -> Path:
        # Slugs are derived (sanitised, up to 128 chars); `join` still refuses separators.
        return self.join("state", "agents", safe_component(agent, "agent name"),
                         f"{slug}.heartbeat.json")

    def agent_log_file(self, agent: str) -> Path:
        name = safe_component(agent, "agent name")
        return self.join("logs", "agents", name, f"{name}.log")
