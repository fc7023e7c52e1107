"""Notifier entries → drivers.

An entry is a manifest's `[[notifiers]]` model, or a plain table from config.toml
(`[[notifiers]]`, `[[daily_summary.notifiers]]`) validated through the same models, so one
set of rules (required keys, URL checks) covers every place an entry can be written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from dotagent.errors import ConfigError
from dotagent.manifest import NOTIFIER_TYPES
from dotagent.manifest import Notifier as NotifierModel
from dotagent.notify.base import Driver

__all__ = ["ALLOWED_PLUGINS_KEY", "DRIVERS", "Entry", "NotifierConfigError", "driver", "entry",
           "parse"]


class NotifierConfigError(ConfigError):
    """A notifier table that does not validate (the message names where and which field)."""


def _drivers() -> dict[str, type]:
    from dotagent.notify.desktop import DesktopDriver
    from dotagent.notify.emailer import EmailDriver
    from dotagent.notify.imessage import IMessageDriver
    from dotagent.notify.ntfy import NtfyDriver
    from dotagent.notify.ping import PingDriver
    from dotagent.notify.plugin import PluginDriver
    from dotagent.notify.pushover import PushoverDriver
    from dotagent.notify.slack import SlackDriver
    from dotagent.notify.telegram import TelegramDriver
    from dotagent.notify.webhook import WebhookDriver
    return {"desktop": DesktopDriver, "slack": SlackDriver, "ntfy": NtfyDriver,
            "pushover": PushoverDriver, "telegram": TelegramDriver,
            "imessage": IMessageDriver, "plugin": PluginDriver, "email": EmailDriver,
            "webhook": WebhookDriver, "ping": PingDriver}


DRIVERS: tuple[str, ...] = tuple(NOTIFIER_TYPES)


@cache
def driver(name: str) -> Driver:
    """The (stateless) driver object for a driver name."""
    found: Driver = _drivers()[name]()
    return found


@cache
def _adapter() -> TypeAdapter[Any]:
    return TypeAdapter(NotifierModel)


def parse(table: Mapping[str, Any], where: str = "notifier") -> BaseModel:
    """Validate one plain table; NotifierConfigError names `where` and each bad field."""
    if not isinstance(table, Mapping):
        raise NotifierConfigError(f"{where}: a notifier must be a table")
    name = table.get("driver")
    if name not in NOTIFIER_TYPES:
        raise NotifierConfigError(f"{where}: unknown driver {name!r} (known: "
                                  f"{', '.join(NOTIFIER_TYPES)})")
    try:
        model: BaseModel = _adapter().validate_python(dict(table))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"][1:]) or "entry"
            problems.append(f"{loc}: {err['msg']}")
        raise NotifierConfigError(f"{where}: " + "; ".join(problems)) from None
    return model


@dataclass(frozen=True)
class Entry:
    """One notifier ready to send: its fields as written (aliases, e.g. `from`), the
    driver, and the options the outbox applies."""

    driver_name: str
    fields: Mapping[str, Any]
    events: tuple[str, ...]
    rate_limit_minutes: int
    timeout: float
    # The manifest's `[security] allowed_plugins` (empty: any plugin): a `plugin` entry
    # naming another one is not run.
    allowed_plugins: tuple[str, ...] = ()

    @property
    def driver(self) -> Driver:
        return driver(self.driver_name)


# A manifest's `[security] allowed_plugins`, carried inside an entry table by dotagent itself
# (the alerts hand the outbox plain tables, and quiet hours keep them in held.json): the
# restriction travels with the entry wherever it goes. Never a key a user writes.
ALLOWED_PLUGINS_KEY = "_allowed_plugins"


def entry(item: BaseModel | Mapping[str, Any], where: str = "notifier") -> Entry:
    allowed: tuple[str, ...] = ()
    if isinstance(item, Mapping) and ALLOWED_PLUGINS_KEY in item:
        item = dict(item)
        raw = item.pop(ALLOWED_PLUGINS_KEY)
        allowed = tuple(str(x) for x in raw) if isinstance(raw, list | tuple) else ()
    model = item if isinstance(item, BaseModel) else parse(item, where)
    fields = model.model_dump(by_alias=True)
    name = fields["driver"]
    timeout = fields.get("timeout_seconds")
    if timeout is None:
        timeout = 15.0 if name == "plugin" else 10.0
    return Entry(driver_name=name, fields=fields, events=tuple(fields.get("events") or ()),
                 rate_limit_minutes=int(fields.get("rate_limit_minutes") or 0),
                 timeout=float(timeout), allowed_plugins=allowed)
