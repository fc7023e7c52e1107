"""`[quiet_hours]`: non-critical notices are held, then delivered as one digest when the
quiet hours end; critical ones go through. The held queue is `state/notify/held.json`, so a
restart does not lose it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from dotagent.alerts._statefile import notify_path, read_object, write_object
from dotagent.alerts.seam import Message, entry_table
from dotagent.paths import Home

__all__ = ["HeldQueue", "QuietHours", "digests"]

FILE_NAME = "held.json"
MAX_HELD = 500  # beyond this the oldest are dropped (counted in the digest)


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    zone: tzinfo

    def active(self, now: datetime) -> bool:
        t = now.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # across midnight

    def ends_at(self, now: datetime) -> datetime:
        """The first end of quiet hours strictly after `now` (an exact wake-up reason): the
        first instant after `now` at which `active` turns false. Around DST changes the wall
        time `end` may happen twice (autumn: the hours after it can be quiet again, until
        its second occurrence) or never (spring: quiet hours end when the clocks jump past
        it)."""
        local = now.astimezone(self.zone)
        for days in range(0, 3):
            day = local.date() + timedelta(days=days)
            lo, hi = sorted(datetime.combine(day, self.end, tzinfo=self.zone)
                            .replace(fold=fold).astimezone(UTC) for fold in (0, 1))
            candidates = [lo, hi]
            if lo != hi and lo.astimezone(self.zone).time().replace(tzinfo=None) != self.end:
                # `end` falls in a gap: the first minute after the jump where it is over.
                at = lo
                while at < hi and self.active(at):
                    at += timedelta(minutes=1)
                candidates = [at]
            for at in candidates:
                if at > now and not self.active(at):
                    return at.astimezone(now.tzinfo)
        raise AssertionError("unreachable: an end time exists within two days")


@dataclass
class Held:
    message: Message
    entries: list[dict[str, Any]]
    at: int

    def to_json(self) -> dict[str, Any]:
        m = self.message
        return {"event": m.event, "agent": m.agent, "schedule": m.schedule, "body": m.body,
                "title": m.title, "at": self.at, "entries": self.entries}


class HeldQueue:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.path = notify_path(home, FILE_NAME)

    def load(self) -> tuple[list[Held], int]:
        """(held notices, how many were dropped for the cap); corrupt or missing → empty."""
        data = read_object(self.path) or {}
        out: list[Held] = []
        for item in data.get("held") or []:
            if not isinstance(item, dict):
                continue
            try:
                msg = Message(event=str(item["event"]), agent=str(item["agent"]),
                              schedule=str(item["schedule"]), body=str(item["body"]),
                              title=item.get("title") if isinstance(item.get("title"), str)
                              else None)
                entries = [e for e in item.get("entries") or [] if isinstance(e, dict)]
                out.append(Held(msg, entries, int(item.get("at") or 0)))
            except (KeyError, TypeError, ValueError):
                continue
        dropped = data.get("dropped")
        return out, dropped if isinstance(dropped, int) and dropped >= 0 else 0

    def add(self, message: Message, entries: Sequence[Any], now: float) -> None:
        """Hold `message` for `entries`; its body and title are redacted first (the file
        is state, and no secret value is ever written to state)."""
        from dataclasses import replace

        from dotagent.redaction import redact

        message = replace(message, body=redact(message.body),
                          title=None if message.title is None else redact(message.title))
        held, dropped = self.load()
        held.append(Held(message, [entry_table(e) for e in entries], int(now)))
        if len(held) > MAX_HELD:
            dropped += len(held) - MAX_HELD
            held = held[-MAX_HELD:]
        self._write(held, dropped)

    def clear(self) -> None:
        self._write([], 0)

    def pending(self) -> bool:
        held, dropped = self.load()
        return bool(held or dropped)

    def _write(self, held: list[Held], dropped: int) -> None:
        write_object(self.path, {"held": [h.to_json() for h in held], "dropped": dropped})


def _entry_key(table: dict[str, Any]) -> str:
    import json

    plain = {k: v for k, v in table.items() if k != "events"}
    return json.dumps(plain, sort_keys=True, default=str)


def digests(held: Sequence[Held], dropped: int = 0
            ) -> list[tuple[Message, list[dict[str, Any]]]]:
    """One digest message per notifier that had notices held, with every notice for it in
    the order they came. The notifier's `events` filter was applied when the notice was held,
    so the digest goes to it unfiltered (its `events` key removed)."""
    per: dict[str, tuple[dict[str, Any], list[Message]]] = {}
    for h in held:
        for table in h.entries:
            key = _entry_key(table)
            if key not in per:
                per[key] = ({k: v for k, v in table.items() if k != "events"}, [])
            per[key][1].append(h.message)
    out: list[tuple[Message, list[dict[str, Any]]]] = []
    for table, messages in per.values():
        n = len(messages)
        lines = [f"🌙 {n} notice{'s' if n != 1 else ''} held during quiet hours"]
        if dropped:
            lines[0] += f" ({dropped} older ones dropped)"
        for m in messages:
            lines.append("")
            lines.append(m.body)
        agents = {m.agent for m in messages}
        agent = agents.pop() if len(agents) == 1 else "dotagent"
        out.append((Message(event="quiet_hours_digest", agent=agent, schedule="",
                            body="\n".join(lines), title="dotagent: quiet hours digest"),
                    [table]))
    return out
