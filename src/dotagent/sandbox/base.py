"""The Sandbox protocol and the policy it enforces (issue 11 items 1 and 3).

A `Policy` is what an agent's `[security]` section asks for, reduced to what a sandbox
must do: cut the network, make the filesystem read-only except some directories. Two more
restrictions (`env_passthrough`, `allowed_commands`) need no sandbox: dotagent applies them
itself before the spawn (`dotagent.runner.confine`).

Contract of a `Sandbox`:
- `unavailable()` returns None when this machine can enforce policies, else a one-line
  reason; it may run a probe, at most once per process, and never raises.
- `wrap(...)` returns the argv and executable that run the command confined. It never
  goes through a shell, never relaxes the policy, and keeps the command a descendant of
  the process that is spawned (so the supervisor's process-group kill reaches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from dotagent.manifest import Security

__all__ = ["Policy", "Sandbox"]


@dataclass(frozen=True)
class Policy:
    """What the sandbox must enforce. `writable` None: the filesystem is not restricted;
    otherwise only those directories (plus the run's own paths, see `wrap`) are writable.
    `hosts` is a network host allowlist, which nothing here can enforce yet."""

    network: Literal["allow", "deny"]
    hosts: tuple[str, ...] = ()
    writable: tuple[Path, ...] | None = None

    @property
    def confines(self) -> bool:
        """True when a sandbox is needed at all."""
        return self.network != "allow" or bool(self.hosts) or self.writable is not None

    @classmethod
    def from_security(cls, security: Security | None, agent_dir: Path) -> Policy:
        """`network = [hosts]` keeps the hosts (refused later: no proxy yet);
        `filesystem_writable` entries are `~`-expanded and taken relative to the working
        directory."""
        if security is None:
            return cls(network="allow")
        from dotagent.manifest import expand_user

        network: Literal["allow", "deny"]
        hosts: tuple[str, ...] = ()
        if isinstance(security.network, list):
            network, hosts = "deny", tuple(security.network)
        else:
            network = security.network
        writable: tuple[Path, ...] | None = None
        if security.filesystem_writable:
            paths = []
            for entry in security.filesystem_writable:
                path = expand_user(entry)
                paths.append(path if path.is_absolute() else agent_dir / path)
            writable = tuple(paths)
        return cls(network=network, hosts=hosts, writable=writable)


class Sandbox(Protocol):
    name: str

    def unavailable(self) -> str | None: ...

    def wrap(self, policy: Policy, argv: Sequence[str], executable: str, *, cwd: Path,
             writable_extra: Sequence[Path]) -> tuple[list[str], str]: ...
