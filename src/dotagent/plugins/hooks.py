"""The run hooks (SPEC S3.6, S4.3): `[[preflight]]`, `[[on_success]]`, `[[on_failure]]`.

`PluginHooks` is what `runner.lifecycle` calls (its `Hooks` protocol). Every call goes
through `plugins.client.invoke` and is audited `plugin_invoked{agent, plugin, plugin_kind,
ok}`; nothing here raises or changes a run's outcome, except that a failed preflight stops
the run (the lifecycle records `preflight_failed` and fans the `preflight` event out).

- Preflights run in order; the first that fails — answers ok=false, crashes, times out, is
  not found (S14.11: the message says where we looked), or is refused by
  `[security].allowed_plugins` — is the `PreflightFailure`, its `suggest` the plugin's
  `suggest`, else the failure's own message.
- `[[on_success]]` sinks (kind `sink`, event `success`) receive the run's stdout exactly
  (S14.10), read back from the run's spool; stdout above SINK_STDOUT_MAX is not sent (the
  sink call is recorded as failed, never handed a cut document).
- `[[on_failure]]` hooks (kind `notify`) receive every other event, filtered by `events`
  (empty = all, exact match).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dotagent.audit import events
from dotagent.display import quote_name
from dotagent.errors import DotagentError
from dotagent.manifest import PluginRef
from dotagent.paths import Home
from dotagent.plugins.client import PluginResult, invoke
from dotagent.plugins.protocol import invoke_payload
from dotagent.runner.lifecycle import PreflightFailure, RunEvent, RunRequest
from dotagent.runner.output import SINK_STDOUT_MAX

if TYPE_CHECKING:
    from dotagent.audit import AuditLog

__all__ = ["DEFAULT_DEADLINES", "PluginHooks"]

# S4.3: seconds, per call site; a PluginRef's `timeout_seconds` overrides.
DEFAULT_DEADLINES: dict[str, float] = {"preflight": 30.0, "sink": 300.0, "notify": 15.0}

# (request, pid, argv, executable, kind, deadline seconds): the daemon's supervisor.json
OnSpawn = Callable[[RunRequest, int, list[str], str, str, float], None]
OnExit = Callable[[RunRequest, int], None]


class PluginHooks:
    def __init__(self, home: Home, audit: AuditLog, env: Mapping[str, str], *,
                 say: Callable[[str], None] | None = None, on_spawn: OnSpawn | None = None,
                 on_exit: OnExit | None = None, grace: float | None = None) -> None:
        self.home = home
        self.audit = audit
        self.env = env
        self.say = say or (lambda text: None)
        self.on_spawn = on_spawn
        self.on_exit = on_exit
        self.grace = grace

    # -- the Hooks protocol -------------------------------------------------------------
    def preflight(self, request: RunRequest) -> PreflightFailure | None:
        for ref in request.loaded.manifest.preflight:
            result = self._call(request, ref, "preflight", "preflight", None)
            if not result.ok:
                return PreflightFailure(ref.plugin, result.suggest or result.error)
        return None

    def after(self, request: RunRequest, event: RunEvent) -> None:
        manifest = request.loaded.manifest
        if event.kind == "success":
            if not manifest.on_success:
                return
            message = self._stdout(event)
            for ref in manifest.on_success:
                if message is None:
                    self._record(request, ref.plugin, "sink", False)
                    self._report(request, ref.plugin, "sink",
                                 f"the run's stdout is larger than "
                                 f"{SINK_STDOUT_MAX // (1024 * 1024)} MiB or could not be "
                                 "kept; the sink was not called")
                    continue
                self._call(request, ref, "sink", "success", message)
            return
        self.notice(request, event.kind, event.message)

    def notice(self, request: RunRequest, event: str, message: str) -> int:
        """`event` to the agent's `[[on_failure]]` hooks that listen for it (kind `notify`):
        a run's failure events, and the alerts the daemon raises between runs (`stale`, a
        `given_up` reminder). Returns how many hooks listened."""
        called = 0
        for ref in request.loaded.manifest.on_failure:
            if ref.events and event not in ref.events:
                continue
            called += 1
            self._call(request, ref, "notify", event, message)
        return called

    # -- helpers -------------------------------------------------------------------------
    def _stdout(self, event: RunEvent) -> str | None:
        outcome = event.report.outcome
        spool = outcome.stdout_spool if outcome is not None else None
        if spool is None:
            return event.message
        data = spool.read()
        if data is None:
            return None
        # A JSON string holds Unicode text: valid UTF-8 arrives byte for byte, an invalid
        # byte becomes U+FFFD (upstream dropped the whole output; see docs/decisions.md).
        return data.decode("utf-8", errors="replace")

    def _call(self, request: RunRequest, ref: PluginRef, kind: str, event: str,
              message: str | None) -> PluginResult:
        agent = request.agent
        security = request.loaded.manifest.security
        if security is not None and security.allowed_plugins \
                and ref.plugin not in security.allowed_plugins:
            reason = (f"plugin {ref.plugin} is not in security.allowed_plugins "
                      f"({', '.join(security.allowed_plugins)}); not run")
            self._record(request, ref.plugin, kind, False)
            self._append(events.PluginNotAllowed(agent=agent, schedule=request.schedule.id,
                                                 plugin=ref.plugin, plugin_kind=kind))
            self._report(request, ref.plugin, kind, reason)
            return PluginResult(False, reason)
        deadline = float(ref.timeout_seconds) if ref.timeout_seconds is not None \
            else DEFAULT_DEADLINES[kind]
        stop = request.stop
        if stop is not None and stop.count > 0 and self.grace is not None:
            # The run was stopped (the daemon is shutting down) and now reports it: the hook
            # gets the shutdown grace to do so instead of a SIGTERM as it starts.
            deadline, stop = min(deadline, self.grace), None
        payload = invoke_payload(kind, agent, request.schedule.id, event, message, ref.config)
        extra: dict[str, Any] = {}
        if self.grace is not None:
            extra["grace"] = self.grace
        on_spawn = self.on_spawn
        on_exit = self.on_exit
        result = invoke(
            ref.plugin, "invoke", payload, home=self.home, env=self.env, timeout=deadline,
            on_spawn=None if on_spawn is None else (
                lambda pid, argv, exe: on_spawn(request, pid, argv, exe, kind, deadline)),
            on_exit=None if on_exit is None else (lambda pid: on_exit(request, pid)),
            stop=stop, **extra)
        self._record(request, ref.plugin, kind, result.ok)
        if not result.ok and kind != "preflight":
            self._report(request, ref.plugin, kind, result.error or "answered ok=false")
        return result

    def _record(self, request: RunRequest, plugin: str, kind: str, ok: bool) -> None:
        self._append(events.PluginInvoked(agent=request.agent, plugin=plugin,
                                          plugin_kind=kind, ok=ok))

    def _append(self, event: events.Event) -> None:
        try:
            self.audit.append(event)
        except (OSError, DotagentError) as exc:
            self.say(f"[dotagent] error: could not record {event.event_type} in the audit "
                     f"log: {exc}\n")

    def _report(self, request: RunRequest, plugin: str, kind: str, problem: str) -> None:
        self.say(f"[dotagent] warning: agent {quote_name(request.agent)}, {kind} plugin "
                 f"{quote_name(plugin)}: {problem}\n")
