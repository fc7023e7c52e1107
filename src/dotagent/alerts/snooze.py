"""`dotagent snooze NAME DURATION`: no alerts for an agent (or one of its schedules) until a
moment. Runs still run and the audit log still records; only notices are silenced.
`state/notify/snoozes.json`: `{"snoozes": {"<agent>": <until epoch s>, "<agent>/<schedule>":
…}}`; expired entries are dropped when the file is next written.
"""

from __future__ import annotations

import re

from dotagent.alerts._statefile import notify_path, read_object, write_object
from dotagent.paths import Home

__all__ = ["Snoozes", "parse_duration"]

FILE_NAME = "snoozes.json"
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
MAX_SECONDS = 366 * 86400


def parse_duration(text: str) -> int | None:
    """`2h`, `30m`, `1d`, `1d12h`, `1h30m` → seconds; None when it is not one (or is 0)."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m or not any(m.groups()):
        return None
    d, h, mins = (int(g or 0) for g in m.groups())
    seconds = d * 86400 + h * 3600 + mins * 60
    return seconds if 0 < seconds <= MAX_SECONDS else None


class Snoozes:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.path = notify_path(home, FILE_NAME)

    def table(self) -> dict[str, int]:
        data = read_object(self.path) or {}
        raw = data.get("snoozes")
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, int)
                and not isinstance(v, bool)}

    def until(self, agent: str, schedule: str | None, now: float) -> int | None:
        """When the snooze covering (agent, schedule) ends, or None when none is active."""
        table = self.table()
        found = [table.get(agent)]
        if schedule:
            found.append(table.get(f"{agent}/{schedule}"))
        active = [t for t in found if t is not None and t > now]
        return max(active) if active else None

    def set(self, agent: str, schedule: str | None, until: int | None, now: float) -> None:
        """Snooze until `until` (epoch s), or lift the snooze (None)."""
        table = {k: v for k, v in self.table().items() if v > now}
        key = f"{agent}/{schedule}" if schedule else agent
        if until is None:
            table.pop(key, None)
            if not schedule:  # `snooze NAME off` lifts every snooze of the agent
                for k in [k for k in table if k.startswith(f"{agent}/")]:
                    del table[k]
        else:
            table[key] = until
        write_object(self.path, {"snoozes": table})
