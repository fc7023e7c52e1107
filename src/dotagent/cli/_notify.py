"""The notifier outbox of a foreground command (`run-now`, `tick`): it waits for each
delivery, bounded by the entry's timeout, before the command goes on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dotagent.audit import AuditLog
    from dotagent.manifest import LoadedManifest
    from dotagent.notify.outbox import Outbox
    from dotagent.paths import Home


def foreground_outbox(home: Home, audit: AuditLog | None, env: Mapping[str, str], *,
                      secrets: Mapping[str, str] | None = None) -> Outbox:
    """`${NAME}` is looked up in `secrets` (the loaded store), then in `env`."""
    from dotagent.cli import _streams
    from dotagent.notify.outbox import Outbox
    store = secrets or {}

    def lookup(name: str) -> str | None:
        value = store.get(name)
        return value if value is not None else env.get(name)

    return Outbox(home, audit, env=env, lookup=lookup, background=False, say=_streams.say)


def run_notifiers(outbox: Outbox, loaded: LoadedManifest) -> tuple[Any, ...]:
    declared = loaded.manifest.notifiers
    return (outbox.for_run(declared),) if declared else ()
