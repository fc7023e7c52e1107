"""The re-notification ladder (UPSTREAM-0.6 §7): `state/notify/alerts.json`.

One episode per `<agent>/<schedule>/<event>` (`stale` or `given_up`). It is announced once,
then reminded after 1 h, 6 h and every 24 h after that, and cleared by the first healthy
window. All decisions take `now` (epoch seconds) from the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from dotagent.alerts._statefile import notify_path, read_object, write_object
from dotagent.paths import Home

__all__ = ["GAPS", "Episode", "Ladder", "episode_key", "given_up_text", "human_duration",
           "stale_text", "stderr_excerpt"]

GAPS: tuple[int, ...] = (3600, 21600, 86400)  # seconds; the last one repeats
FILE_NAME = "alerts.json"
STDERR_EXCERPT = 400


def episode_key(agent: str, schedule: str, event: str) -> str:
    return f"{agent}/{schedule}/{event}"


@dataclass
class Episode:
    first_notified_at: int
    last_notified_at: int
    count: int

    def gap(self) -> int:
        return GAPS[min(max(self.count, 1) - 1, len(GAPS) - 1)]

    def may_speak(self, now: float) -> bool:
        if now < self.last_notified_at:  # the clock went backwards
            return True
        return now - self.last_notified_at >= self.gap()

    def next_at(self) -> int:
        """The first instant a reminder may go out."""
        return self.last_notified_at + self.gap()


class Ladder:
    """The episode table. `load` never fails (missing or corrupt → empty); `save` raises
    OSError / DotagentError when the state directory refuses it."""

    def __init__(self, episodes: dict[str, Episode] | None = None,
                 home: Home | None = None) -> None:
        self.episodes: dict[str, Episode] = episodes or {}
        self.home = home

    @classmethod
    def load(cls, home: Home) -> Ladder:
        data = read_object(notify_path(home, FILE_NAME)) or {}
        table = data.get("episodes")
        episodes: dict[str, Episode] = {}
        if isinstance(table, dict):
            for key, value in table.items():
                ep = _episode(value)
                if isinstance(key, str) and ep is not None:
                    episodes[key] = ep
        return cls(episodes, home)

    def save(self) -> None:
        assert self.home is not None
        write_object(notify_path(self.home, FILE_NAME), {"episodes": {
            key: {"first_notified_at": ep.first_notified_at,
                  "last_notified_at": ep.last_notified_at, "count": ep.count}
            for key, ep in self.episodes.items()}})

    def may_speak(self, key: str, now: float) -> bool:
        ep = self.episodes.get(key)
        return ep is None or ep.may_speak(now)

    def record(self, key: str, now: float) -> Episode:
        """A notice went out now: the episode starts, or its count goes up."""
        t = int(now)
        ep = self.episodes.get(key)
        if ep is None:
            ep = self.episodes[key] = Episode(t, t, 1)
        else:
            ep.last_notified_at, ep.count = t, ep.count + 1
        return ep

    def clear(self, agent: str, schedule: str) -> list[str]:
        """A healthy window: every episode of (agent, schedule) ends. Returns their keys."""
        prefix = f"{agent}/{schedule}/"
        gone = [k for k in self.episodes if k.startswith(prefix)
                and "/" not in k[len(prefix):]]
        for k in gone:
            del self.episodes[k]
        return gone

    def next_reminder(self) -> int | None:
        """The earliest instant any episode may be reminded (a wake-up reason)."""
        return min((ep.next_at() for ep in self.episodes.values()), default=None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.episodes)


def _episode(value: object) -> Episode | None:
    if not isinstance(value, dict):
        return None
    fields = [value.get(k) for k in ("first_notified_at", "last_notified_at", "count")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fields):
        return None
    first, last, count = fields
    assert isinstance(first, int) and isinstance(last, int) and isinstance(count, int)
    return Episode(first, last, count)


# --------------------------------------------------------------------------------------
# Texts (UPSTREAM-0.6 §7)
# --------------------------------------------------------------------------------------
def human_duration(seconds: float) -> str:
    """`Xd Yh`, `Xh Ym` or `Xm`."""
    minutes = max(0, int(seconds // 60))
    if minutes >= 24 * 60:
        days, rest = divmod(minutes, 24 * 60)
        return f"{days}d {rest // 60}h"
    if minutes >= 60:
        return f"{minutes // 60}h {minutes % 60}m"
    return f"{minutes}m"


def stderr_excerpt(stderr: str | None) -> str:
    """"\n" + the last ≤400 characters of stderr, `…` first when cut; "" when empty."""
    if not stderr:
        return ""
    tail = stderr[-STDERR_EXCERPT:]
    return "\n" + ("…" + tail if len(stderr) > STDERR_EXCERPT else tail)


def _notice(count: int) -> str:
    return f" (notice #{count})" if count > 1 else ""


def stale_text(agent: str, schedule: str, *, last_success: datetime | None, now: datetime,
               count: int, stderr: str | None = None) -> str:
    if last_success is None:
        what = "it has never run successfully"
    else:
        what = ("no successful run in "
                f"{human_duration((now - last_success).total_seconds())}")
    return (f"⏰ {agent}/{schedule} is not being scheduled — {what}{_notice(count)}."
            + stderr_excerpt(stderr))


def given_up_text(agent: str, schedule: str, *, attempts: int, exit_code: int | None,
                  count: int, since_seconds: float = 0.0, stderr: str | None = None) -> str:
    code = "?" if exit_code is None else str(exit_code)
    if count <= 1:
        head = f"🚨 {agent}/{schedule} gave up after {attempts} attempts (exit {code})"
    else:
        head = (f"🚨 {agent}/{schedule} still given up after {attempts} attempts (exit "
                f"{code}), {human_duration(since_seconds)} ago (notice #{count}).")
    return head + stderr_excerpt(stderr)
