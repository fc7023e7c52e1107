"""No sandbox: the command runs as it is. Used when `[security]` restricts nothing, and
when the user chose `[security] enforcement = "warn"` on a machine that cannot confine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dotagent.sandbox.base import Policy

__all__ = ["Unconfined"]


class Unconfined:
    name = "none"

    def unavailable(self) -> str | None:
        return None

    def wrap(self, policy: Policy, argv: Sequence[str], executable: str, *, cwd: Path,
             writable_extra: Sequence[Path]) -> tuple[list[str], str]:
        return list(argv), executable
