"""What the alerts need from delivery: a message and a `Sender`.

`Message` has the shape of `notify.base.Message` (brief N: event, agent, schedule, body,
title, critical); `Sender.send(message, entries)` is `notify.outbox.Outbox.send`'s shape,
where `entries` are notifier tables (dicts as written in TOML) or notifier models. Until the
notify package is on main, `LocalSender` delivers the `desktop` driver through `notify-send`
(argv, no shell) and reports every other driver as not delivered.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["LocalSender", "Message", "Sender", "driver_of", "entry_table", "listens"]


@dataclass(frozen=True)
class Message:
    event: str
    agent: str
    schedule: str
    body: str
    title: str | None = None
    critical: bool = False

    @property
    def label(self) -> str:
        """`agent/schedule`, or `dotagent` for a daemon-wide notice (as notify's)."""
        if not self.agent:
            return "dotagent"
        return f"{self.agent}/{self.schedule}" if self.schedule else self.agent


class Sender(Protocol):
    def send(self, message: Message, entries: Sequence[Any]) -> None: ...


def entry_table(entry: Any) -> dict[str, Any]:
    """A notifier entry as a plain table (a dict, a pydantic model, a SummaryNotifier)."""
    if isinstance(entry, Mapping):
        return dict(entry)
    table = getattr(entry, "table", None)
    if callable(table):
        return dict(table())
    dump = getattr(entry, "model_dump", None)
    if callable(dump):
        return dict(dump())
    return {"driver": getattr(entry, "driver", "?")}


def driver_of(entry: Any) -> str:
    return str(entry_table(entry).get("driver", "?"))


def listens(entry: Any, event: str) -> bool:
    """An `events` filter: empty (or absent) means every event."""
    wanted = entry_table(entry).get("events") or []
    return not wanted or event in wanted


class LocalSender:
    """Stand-in outbox: `desktop` through notify-send, bounded by `timeout` seconds."""

    def __init__(self, env: Mapping[str, str], *, timeout: float = 10.0,
                 log: Callable[[str], None] = lambda text: None) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self.log = log

    def send(self, message: Message, entries: Sequence[Any]) -> None:
        for entry in entries:
            table = entry_table(entry)
            if not listens(table, message.event) and message.event != "daily_summary":
                continue
            driver = table.get("driver")
            if driver != "desktop":
                self.log(f"warning: notifier driver {driver!r} is not available in this "
                         "build; notice not delivered")
                continue
            exe = shutil.which("notify-send", path=self.env.get("PATH"))
            if exe is None:
                self.log("warning: notify-send not found on PATH; desktop notice not "
                         "delivered")
                continue
            title = table.get("title") or message.title or f"dotagent: {message.agent}"
            argv = [exe, "--app-name=dotagent",
                    f"--urgency={'critical' if message.critical else 'normal'}",
                    "--", str(title), message.body]
            try:
                subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.log(f"warning: desktop notice failed: {exc}")
