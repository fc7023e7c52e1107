"""Reading and writing the small JSON files under `state/notify/` (private, atomic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.boundedread import read_bounded
from dotagent.paths import Home

__all__ = ["notify_path", "read_object", "write_object"]


def notify_path(home: Home, name: str) -> Path:
    return home.join("state", "notify", name)


def read_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when it is missing, unreadable, not JSON or not an
    object (each caller treats that as "empty")."""
    try:
        raw = read_bounded(path, follow_links=False)
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_object(path: Path, value: dict[str, Any]) -> None:
    """Atomically (temp file + rename), mode 0600, the directory 0700."""
    write_json_atomic(path, value)
