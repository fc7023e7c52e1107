"""The one delivery path of every notification.

`Outbox.send(message, entries)` applies, per entry: the `events` filter (empty = all), the
empty-body rule, `${VAR}` expansion of every string field, `rate_limit_minutes` (state under
`state/notify/`), the driver's timeout; it audits each attempt (`plugin_invoked`, and
`notifier_failed` with a reason that carries no secret). Deliveries run on a few worker
threads fed by a bounded queue:

- in the daemon (`background=True`) `send` returns at once, so a slow endpoint never delays
  a dispatch, and a dead one cannot grow memory (a full queue drops, audited);
- in a foreground command (`run-now`, `tick`, `daily-summary`) `send` waits for each
  delivery, bounded by its timeout, before it returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from dotagent import redaction
from dotagent.audit import events
from dotagent.errors import DotagentError
from dotagent.notify.base import Message, NotifyError, SendContext, Transport, expand_fields
from dotagent.notify.registry import Entry, entry
from dotagent.paths import Home

if TYPE_CHECKING:
    from dotagent.audit import AuditLog

__all__ = ["Delivery", "Outbox", "RunNotifier", "rate_limit_path"]

# How long a foreground command waits past an entry's own timeout (a DNS lookup or an SMTP
# conversation of several steps is not covered by one socket timeout).
WAIT_MARGIN_SECONDS = 2.0
DEFAULT_QUEUE_LIMIT = 256
DEFAULT_WORKERS = 2
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
# Fields that shape delivery rather than identify the destination.
_NOT_IDENTITY = ("events", "rate_limit_minutes", "timeout_seconds")


class Delivery:
    """One entry's attempt at one message. `status`: queued, sent, skipped (rate limited or
    not applicable), failed, dropped (queue full / shutting down), abandoned (a foreground
    wait ran out)."""

    def __init__(self, entry: Entry, message: Message) -> None:
        self.entry = entry
        self.message = message
        self.status = "queued"
        self.reason: str | None = None
        self._done = threading.Event()
        self._claimed = False
        self._claim_lock = threading.Lock()

    def _claim(self) -> bool:
        """The first outcome wins (a worker finishing after a foreground wait gave up)."""
        with self._claim_lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    @property
    def driver(self) -> str:
        return self.entry.driver_name

    @property
    def ok(self) -> bool:
        return self.status in ("sent", "skipped")

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, status: str, reason: str | None = None) -> None:
        self.status, self.reason = status, reason
        self._done.set()

    def __repr__(self) -> str:
        return f"Delivery({self.driver}, {self.status}, {self.reason!r})"


class _RunEventLike(Protocol):
    kind: str
    agent: str
    schedule: str
    message: str


class PluginProcesses(Protocol):
    """Who keeps the list of a `plugin` notifier's processes (the daemon's supervisor)."""

    def spawned(self, message: Message, pid: int, argv: list[str], executable: str,
                deadline: float) -> None: ...

    def exited(self, pid: int) -> None: ...


class RunNotifier:
    """`runner.lifecycle.Notifier` for one manifest's `[[notifiers]]`."""

    def __init__(self, outbox: Outbox, entries: Sequence[Entry]) -> None:
        self.outbox = outbox
        self.entries = entries

    def notify(self, event: _RunEventLike) -> None:
        message = Message(event=event.kind, agent=event.agent, schedule=event.schedule,
                          body=event.message, critical=event.kind == "given_up")
        self.outbox.send(message, self.entries)

    def started(self, agent: str, schedule: str) -> None:
        """The run began: `ping` entries (that listen for `start`) report it to their
        check's `/start`. Only those: a start is not news for a person. Never waits, even
        in a foreground command (the agent is not held back by a slow check)."""
        pings = [e for e in self.entries if e.driver_name == "ping"]
        if pings:
            self.outbox.send(Message(event="start", agent=agent, schedule=schedule,
                                     body=f"{agent}/{schedule} started"), pings, wait=False)


def rate_limit_path(home: Home, item: Entry, fields: Mapping[str, Any]) -> Path:
    """imessage keeps upstream's file (`state/notify/imessage/<to, non-alphanumerics as
    _>.json`, shared by every agent that writes to that recipient); the other drivers key on
    a hash of the entry as written, so a token in it never becomes a file name."""
    name = item.driver_name
    if name == "imessage":
        key = _NOT_ALNUM.sub("_", str(fields.get("to", "")))
        if 0 < len(key) <= 200:
            return home.join("state", "notify", "imessage", f"{key}.json")
    ident = {k: v for k, v in item.fields.items() if k not in _NOT_IDENTITY}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, ensure_ascii=False,
                                       default=str).encode("utf-8")).hexdigest()[:24]
    return home.join("state", "notify", name, f"{digest}.json")


class Outbox:
    def __init__(self, home: Home, audit: AuditLog | None, *,
                 env: Mapping[str, str] | None = None,
                 lookup: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.time,
                 transport: Transport | None = None, background: bool = False,
                 workers: int = DEFAULT_WORKERS, queue_limit: int = DEFAULT_QUEUE_LIMIT,
                 say: Callable[[str], None] | None = None, platform: str = sys.platform,
                 runtime_dir: Path | None = None,
                 on_plugin: PluginProcesses | None = None) -> None:
        self.home = home
        self.audit = audit
        self.env: Mapping[str, str] = dict(os.environ) if env is None else env
        envmap = self.env
        self.lookup: Callable[[str], str | None] = lookup or (lambda name: envmap.get(name))
        self.clock = clock
        if transport is None:
            from dotagent.notify.http import UrllibTransport
            transport = UrllibTransport()
        self.transport = transport
        self.background = background
        self.say = say or (lambda text: None)
        self.platform = platform
        self.runtime_dir = runtime_dir
        self.on_plugin = on_plugin
        self._queue: queue.Queue[Delivery | None] = queue.Queue(maxsize=max(1, queue_limit))
        self._workers = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._key_locks: dict[Path, threading.Lock] = {}
        self._closed = False

    # ----------------------------------------------------------------------------------
    def for_run(self, entries: Iterable[BaseModel | Mapping[str, Any]], *,
                allowed_plugins: Sequence[str] = ()) -> RunNotifier:
        """`allowed_plugins`: the manifest's `[security] allowed_plugins`, enforced on its
        `plugin` entries as on its hooks."""
        allowed = tuple(allowed_plugins)
        return RunNotifier(self, [dataclasses.replace(self._entry(e, i), allowed_plugins=allowed)
                                  for i, e in enumerate(entries)])

    def send(self, message: Message, entries: Iterable[BaseModel | Mapping[str, Any] | Entry],
             *, ignore_events: bool = False, wait: bool | None = None) -> list[Delivery]:
        """Deliver `message` to every entry that listens for its event. Never raises for
        what an endpoint or an entry does; each problem is a failed Delivery (audited).
        `wait` (default: a foreground outbox waits, a background one does not) says whether
        to return only once each delivery finished or its time ran out."""
        if not message.body.strip():
            if message.event == "success":
                return []  # a success with no output sends nothing (UPSTREAM-0.6 §8)
            message = Message(message.event, message.agent, message.schedule,
                              f"{message.label}: {message.event} (no output)", message.title,
                              message.critical)
        deliveries: list[Delivery] = []
        for i, item in enumerate(entries):
            try:
                ready = item if isinstance(item, Entry) else self._entry(item, i)
            except DotagentError as exc:
                name = item.get("driver") if isinstance(item, Mapping) else None
                bad = Entry(str(name or "unknown"), {}, (), 0, 0.0)
                failed = Delivery(bad, message)
                self._record(failed, "failed", exc.message)
                deliveries.append(failed)
                continue
            if ready.events and not ignore_events and message.event not in ready.events:
                continue
            delivery = Delivery(ready, message)
            deliveries.append(delivery)
            self._submit(delivery)
        if (not self.background) if wait is None else wait:
            for delivery in deliveries:
                if not delivery.wait(delivery.entry.timeout + WAIT_MARGIN_SECONDS):
                    self._record(delivery, "abandoned",
                                 f"no result within {delivery.entry.timeout:g}s; gave up "
                                 "waiting")
        return deliveries

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking messages; with `wait`, let queued ones finish (up to `timeout`). A
        foreground outbox has nothing queued by now (`send` waited); a worker still busy
        with an abandoned delivery is not waited for (the threads are daemon threads)."""
        if timeout is None and not self.background:
            timeout = 1.0
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        if not wait:
            while True:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is not None:
                    self._record(pending, "dropped", "dotagent is stopping")
        for _ in threads:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=0.1)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # ----------------------------------------------------------------------------------
    def _entry(self, item: BaseModel | Mapping[str, Any], index: int) -> Entry:
        return entry(item, f"notifiers[{index}]")

    def _submit(self, delivery: Delivery) -> None:
        with self._lock:
            if self._closed:
                self._record(delivery, "dropped", "dotagent is stopping")
                return
            while len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, name="dotagent-notify",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:
            self._record(delivery, "dropped",
                         f"delivery queue full ({self._queue.maxsize} waiting); dropped")

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            except Exception as exc:  # a driver bug must not kill the worker
                self._record(delivery, "failed", f"{type(exc).__name__}: {exc}")

    def _deliver(self, delivery: Delivery) -> None:
        item, message = delivery.entry, delivery.message
        try:
            fields, used = expand_fields(item.fields, self.lookup)
        except NotifyError as exc:
            self._record(delivery, "failed", exc.message)
            return
        redaction.register_secrets(used)
        if item.driver_name == "plugin" and item.allowed_plugins:
            name = str(fields.get("name") or "")
            if name not in item.allowed_plugins:
                self._refuse_plugin(delivery, name)
                return
        on_spawn: Callable[[int, list[str], str], None] | None = None
        on_exit: Callable[[int], None] | None = None
        watcher = self.on_plugin
        if watcher is not None and item.driver_name == "plugin":
            deadline = item.timeout

            def on_spawn(pid: int, argv: list[str], exe: str) -> None:
                watcher.spawned(message, pid, argv, exe, deadline)
            on_exit = watcher.exited
        ctx = SendContext(home=self.home, env=self.env, lookup=self.lookup,
                          transport=self.transport, fields=fields, timeout=item.timeout,
                          clock=self.clock, platform=self.platform,
                          runtime_dir=self.runtime_dir, on_spawn=on_spawn, on_exit=on_exit)
        limit = item.rate_limit_minutes
        path = rate_limit_path(self.home, item, fields) if limit > 0 else None
        lock = self._key_lock(path) if path is not None else contextlib.nullcontext()
        with lock:
            if path is not None:
                until = self._limited_until(path, limit)
                if until is not None:
                    from dotagent.timefmt import iso_local
                    self._record(delivery, "skipped", f"rate_limited until {iso_local(until)}")
                    return
            try:
                item.driver.send(message, ctx)
            except NotifyError as exc:
                self._record(delivery, "failed", exc.message)
                return
            # A `start` only asks the limit: the result of the same run sets it, else a
            # ping's own /start would swallow the result that follows it.
            if path is not None and message.event != "start":
                self._write_limit(path, item, fields)
        self._record(delivery, "sent")

    def _refuse_plugin(self, delivery: Delivery, name: str) -> None:
        allowed = delivery.entry.allowed_plugins
        if self.audit is not None:
            with contextlib.suppress(OSError, DotagentError):
                self.audit.append(events.PluginNotAllowed(
                    agent=delivery.message.agent, schedule=delivery.message.schedule,
                    plugin=name, plugin_kind="notify"))
        self._record(delivery, "failed", f"plugin {name} is not in security.allowed_plugins "
                                         f"({', '.join(allowed)}); not run")

    def _key_lock(self, path: Path) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(path, threading.Lock())

    def _limited_until(self, path: Path, limit: int) -> float | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            last = float(data["last_send_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: nothing was sent that we know of
        now = self.clock()
        if now < last:
            return None  # the clock went backwards
        if (now - last) // 60 < limit:
            return last + limit * 60
        return None

    def _write_limit(self, path: Path, item: Entry, fields: Mapping[str, Any]) -> None:
        from dotagent.atomicfile import write_json_atomic
        from dotagent.private import private_mkdir
        from dotagent.timefmt import iso_local
        now = int(self.clock())
        state: dict[str, Any] = {"last_send_at": now, "last_send_iso": iso_local(now)}
        if item.driver_name == "imessage":
            state["to"] = fields.get("to")
        else:
            state["driver"] = item.driver_name
        try:
            private_mkdir(path.parent)
            write_json_atomic(path, state)
        except (OSError, DotagentError) as exc:
            self.say(redaction.redact(f"[dotagent] error: cannot record the rate limit in "
                                      f"{path}: {exc}\n"))

    def _record(self, delivery: Delivery, status: str, reason: str | None = None) -> None:
        if not delivery._claim():
            return
        if reason is not None:
            reason = redaction.redact(reason)
        plugin = f"notifier:{delivery.driver}"
        agent = delivery.message.agent
        ok = status in ("sent", "skipped")
        if self.audit is not None:
            try:
                self.audit.append(events.PluginInvoked(agent=agent, plugin=plugin,
                                                       plugin_kind="notify", ok=ok))
                if not ok:
                    self.audit.append(events.NotifierFailed(agent=agent, plugin=plugin,
                                                            reason=reason or status))
            except (OSError, DotagentError) as exc:
                self.say(f"[dotagent] error: could not record {plugin} in the audit log: "
                         f"{exc}\n")
        if not ok:
            who = f"agent {agent}" if agent else "daemon-wide notice"
            self.say(f"[dotagent] error: {plugin} ({who}, {delivery.message.event}): "
                     f"{reason or status}\n")
        delivery._finish(status, reason)
