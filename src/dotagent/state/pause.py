"""Paused agents and schedules (`dotagent pause` / `resume`): a paused schedule is not
dispatched, is shown as paused (never stale) and raises no alert.

`state/paused.json`: `{"paused": {"<agent>": {"since": <epoch s>, "until": <epoch s> | null},
"<agent>/<schedule>": {…}}}` — the agent key pauses every schedule of it; `until` null means
"until resumed". Expired entries are dropped when the file is next written. A missing,
unreadable or corrupt file means nothing is paused (`status` and `doctor` say so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.boundedread import read_bounded
from dotagent.paths import Home

__all__ = ["FILE_NAME", "Pause", "Pauses"]

FILE_NAME = "paused.json"


@dataclass(frozen=True)
class Pause:
    key: str  # "<agent>" or "<agent>/<schedule>"
    since: int
    until: int | None  # None: until resumed

    @property
    def schedule(self) -> str | None:
        return self.key.split("/", 1)[1] if "/" in self.key else None

    def active(self, now: float) -> bool:
        return self.until is None or self.until > now

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until}


class Pauses:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.path: Path = home.join("state", FILE_NAME)

    def table(self) -> dict[str, Pause]:
        """Every recorded pause, expired or not."""
        try:
            data = json.loads(read_bounded(self.path, follow_links=False).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return {}
        raw = data.get("paused") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            return {}
        out: dict[str, Pause] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not key or not isinstance(value, dict):
                continue
            since, until = value.get("since"), value.get("until")
            if not isinstance(since, int) or isinstance(since, bool) \
                    or not (until is None or _is_int(until)):
                continue
            out[key] = Pause(key, since, until)
        return out

    def problem(self) -> str | None:
        """Why `paused.json` is there but means nothing (unreadable, not JSON, not the
        shape above), or None when it is fine or absent: every pause it held is ignored."""
        try:
            data = json.loads(read_bounded(self.path, follow_links=False).decode("utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = exc.strerror or str(exc)
        except (UnicodeDecodeError, ValueError):
            reason = "not JSON"
        else:
            if isinstance(data, dict) and isinstance(data.get("paused"), dict):
                return None
            reason = 'not {"paused": {…}}'
        return (f"{self.path} cannot be used: {reason}; nothing is paused while it is so "
                "(`dotagent pause` writes it anew)")

    def active(self, agent: str, schedule: str | None, now: float) -> Pause | None:
        """The pause covering (agent, schedule) now, or None. With both an agent-wide and a
        schedule pause active, the one that lasts longer wins (None = for ever)."""
        table = self.table()
        found = [p for p in (table.get(agent),
                             table.get(f"{agent}/{schedule}") if schedule else None)
                 if p is not None and p.active(now)]
        if not found:
            return None
        return max(found, key=lambda p: float("inf") if p.until is None else p.until)

    def pause(self, agent: str, schedule: str | None, until: int | None, now: float) -> Pause:
        table = self._live(now)
        key = f"{agent}/{schedule}" if schedule else agent
        entry = Pause(key, int(now), until)
        table[key] = entry
        self._write(table)
        return entry

    def resume(self, agent: str, schedule: str | None, now: float) -> list[Pause]:
        """Lift the pause of `schedule` (or, without one, every pause of the agent); returns
        what was lifted."""
        table = self._live(now)
        if schedule:
            keys = [f"{agent}/{schedule}"]
        else:
            keys = [k for k in table if k == agent or k.startswith(f"{agent}/")]
        lifted = [table.pop(k) for k in keys if k in table]
        self._write(table)
        return lifted

    def _live(self, now: float) -> dict[str, Pause]:
        return {k: p for k, p in self.table().items() if p.active(now)}

    def _write(self, table: dict[str, Pause]) -> None:
        write_json_atomic(self.path, {"paused": {k: p.to_json() for k, p in
                                                 sorted(table.items())}})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
