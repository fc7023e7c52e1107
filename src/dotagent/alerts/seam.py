"""What the alerts need from delivery: a message and a `Sender`.

`Message` is `notify.base.Message` (event, agent, schedule, body, title, critical);
`Sender.send(message, entries)` delivers it, where `entries` are notifier tables
(dicts as written in TOML) or notifier models. `OutboxSender` is the production sender (the
notify package's outbox); tests may pass any object with `send`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from dotagent.notify.base import Message

__all__ = ["LadderOwnsGivenUp", "Message", "OutboxSender", "Sender", "agent_entries",
           "driver_of", "entry_table", "listens"]


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
    if callable(dump):  # as written: aliases (email's `from`), so it parses back the same
        return dict(dump(by_alias=True))
    return {"driver": getattr(entry, "driver", "?")}


def agent_entries(manifest: Any) -> list[dict[str, Any]]:
    """A manifest's `[[notifiers]]` as tables that carry its `[security] allowed_plugins`, so
    a notice the alerts send for this agent (now, or later from the quiet-hours queue) runs
    no plugin the manifest does not allow — the rule its runs' notifiers follow."""
    from dotagent.notify.registry import ALLOWED_PLUGINS_KEY

    security = getattr(manifest, "security", None)
    allowed = list(getattr(security, "allowed_plugins", None) or [])
    tables = [entry_table(e) for e in manifest.notifiers]
    if allowed:
        for table in tables:
            table[ALLOWED_PLUGINS_KEY] = allowed
    return tables


def driver_of(entry: Any) -> str:
    return str(entry_table(entry).get("driver", "?"))


def listens(entry: Any, event: str) -> bool:
    """An `events` filter: empty (or absent) means every event."""
    wanted = entry_table(entry).get("events") or []
    return not wanted or event in wanted


class OutboxSender:
    """The production `Sender`: the notify package's outbox, the one delivery path (drivers,
    `${VAR}`, caps, rate limits, audit). The alerts have already chosen the entries that
    listen (and a summary listens to nothing), so the outbox's own `events` filter is not
    applied again. `last` keeps the deliveries of the latest message (a foreground outbox has
    finished them by the time `send` returns)."""

    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox
        self.last: list[Any] = []

    def send(self, message: Message, entries: Sequence[Any]) -> None:
        self.last = self.outbox.send(message, [_outbox_entry(e) for e in entries],
                                     ignore_events=True)


def _outbox_entry(entry: Any) -> Any:
    """What the outbox takes: a notifier model as it is, a config.toml entry
    (`SummaryNotifier`) as the table it was written as."""
    table = getattr(entry, "table", None)
    return table() if callable(table) and not isinstance(entry, Mapping) else entry


class LadderOwnsGivenUp:
    """A run's notifiers without its `given_up` event: where the alert ladder runs (the
    daemon, `tick`), the first given_up notice is the ladder's (`Alerts.run_finished`), so
    one failure is announced once (docs/decisions.md, "given_up is announced by the
    ladder")."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def notify(self, event: Any) -> None:
        if event.kind != "given_up":
            self.inner.notify(event)

    def started(self, agent: str, schedule: str) -> None:
        self.inner.started(agent, schedule)

