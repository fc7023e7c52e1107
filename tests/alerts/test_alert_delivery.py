"""What an alert (sent by the health sweep, not by a run) reaches, through the real outbox:
a manifest's `email` notifier (its `from` field survives the trip), never a `plugin`
notifier outside the manifest's `[security] allowed_plugins` (not even after quiet hours),
and the `[[on_failure]]` hooks that listen for `stale` (and for given_up reminders)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from alerts_kit import GIVEN_UP, NOW, STALE, agent, with_state
from dotagent.alerts.seam import Message, OutboxSender
from dotagent.alerts.service import Alerts
from dotagent.audit import AuditLog
from dotagent.config import Config, parse_config
from dotagent.notify.outbox import Outbox
from dotagent.paths import Home
from dotagent.plugins.hooks import PluginHooks
from dotagent.runner.lifecycle import RunRequest
from plugin_kit import RECORDER, audit_events, plugin_env, write_plugin


def _recording_plugin(tmp_path: Path, name: str) -> tuple[dict[str, str], Path]:
    """A real plugin `name` that records each payload it gets: (its env, the record dir)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    record.mkdir()
    write_plugin(bin_dir, name, RECORDER)
    return {**plugin_env(bin_dir), "RECORD_DIR": str(record)}, record


def _outbox_alerts(home: Path, env: dict[str, str], config: Config | None = None,
                   **kw: Any) -> Alerts:
    outbox = Outbox(Home(home), AuditLog(Home(home)), env=env, background=False)
    return Alerts(Home(home), config or Config(), OutboxSender(outbox), zone=UTC, **kw)


def test_stale_alert_reaches_a_manifest_email_notifier(dotagent_home: Path,
                                                       smtp_server: dict[str, Any]) -> None:
    entry = with_state(agent(dotagent_home, "mail", f"""
        [[notifiers]]
        driver = "email"
        host = "127.0.0.1"
        port = {smtp_server["port"]}
        from = "dotagent@example.com"
        to = ["me@example.com"]
        """), **STALE)
    _outbox_alerts(dotagent_home, {}).sweep([entry], NOW)
    [mail] = smtp_server["received"]
    assert mail.mail_from == "dotagent@example.com"
    assert b"is not being scheduled" in mail.content
    assert audit_events(dotagent_home, "notifier_failed") == []


def _plugin_notifieragent(home: Path) -> Any:
    return agent(home, "guarded", """
        [[notifiers]]
        driver = "plugin"
        name = "evil"
        """, extra="""
        [security]
        allowed_plugins = ["good"]
        """)


def test_alert_never_runs_a_plugin_notifier_outside_allowed_plugins(
        dotagent_home: Path, tmp_path: Path) -> None:
    env, record = _recording_plugin(tmp_path, "evil")
    entry = with_state(_plugin_notifieragent(dotagent_home), **GIVEN_UP)
    _outbox_alerts(dotagent_home, env).sweep([entry], NOW)
    assert list(record.iterdir()) == []  # the plugin never ran
    [refused] = audit_events(dotagent_home, "plugin_not_allowed")
    assert refused["agent"] == "guarded" and refused["plugin"] == "evil"
    assert refused["plugin_kind"] == "notify"


def test_a_notice_held_for_quiet_hours_keeps_the_restriction(dotagent_home: Path,
                                                             tmp_path: Path) -> None:
    env, record = _recording_plugin(tmp_path, "evil")
    result = parse_config(b'[quiet_hours]\nstart = "11:00"\nend = "13:00"\ntimezone = "UTC"\n',
                          Path("config.toml"))
    assert result.config is not None
    config = result.config
    alerts = _outbox_alerts(dotagent_home, env, config)
    entry = with_state(_plugin_notifieragent(dotagent_home), **STALE)
    alerts.sweep([entry], NOW)  # 12:00: quiet, a stale notice is not critical
    held = json.loads((dotagent_home / "state/notify/held.json").read_text())
    assert len(held["held"]) == 1
    assert alerts.flush_held(NOW + timedelta(hours=2)) == 1  # 14:00: the digest goes out
    assert list(record.iterdir()) == []
    assert [e["plugin"] for e in audit_events(dotagent_home, "plugin_not_allowed")] == ["evil"]


class HookRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Message]] = []

    def __call__(self, entry: Any, message: Message) -> None:
        self.calls.append((entry.agent, message))


def _hooked(home: Path) -> Any:
    return agent(home, "hooked", "", extra="""
        [[on_failure]]
        plugin = "pager"
        events = ["stale", "given_up"]
        """)


def test_stale_goes_to_on_failure_hooks_even_with_no_notifier(dotagent_home: Path) -> None:
    hooks = HookRecorder()
    sender_calls: list[Any] = []

    class Sender:
        def send(self, message: Message, entries: Any) -> None:
            sender_calls.append(message)

    alerts = Alerts(Home(dotagent_home), Config(), Sender(), zone=UTC, hooks=hooks)
    entry = with_state(_hooked(dotagent_home), **STALE)
    alerts.sweep([entry], NOW)
    assert [(a, m.event) for a, m in hooks.calls] == [("hooked", "stale")]
    assert "is not being scheduled" in hooks.calls[0][1].body
    assert sender_calls == []
    ladder = json.loads((dotagent_home / "state/notify/alerts.json").read_text())
    assert ladder["episodes"]["hooked/main/stale"]["count"] == 1
    # within the hour it stays quiet; after it, the reminder reaches the hook again
    alerts.sweep([replace(entry, state=replace(entry.state))], NOW + timedelta(minutes=30))
    assert len(hooks.calls) == 1
    alerts.sweep([replace(entry, state=replace(entry.state))], NOW + timedelta(minutes=61))
    assert len(hooks.calls) == 2 and "notice #2" in hooks.calls[1][1].body


def test_given_up_reminders_reach_hooks_but_not_the_first_notice(dotagent_home: Path) -> None:
    hooks = HookRecorder()

    class Sender:
        def send(self, message: Message, entries: Any) -> None:
            pass

    alerts = Alerts(Home(dotagent_home), Config(), Sender(), zone=UTC, hooks=hooks)
    entry = with_state(_hooked(dotagent_home), **GIVEN_UP)
    alerts.sweep([entry], NOW)
    assert hooks.calls == []  # the run itself told the hooks it gave up
    alerts.sweep([replace(entry, state=replace(entry.state))], NOW + timedelta(minutes=61))
    assert [m.event for _, m in hooks.calls] == ["given_up"]
    assert "still given up" in hooks.calls[0][1].body


def test_a_snooze_silences_the_hooks_too(dotagent_home: Path) -> None:
    from dotagent.alerts.snooze import Snoozes

    hooks = HookRecorder()

    class Sender:
        def send(self, message: Message, entries: Any) -> None:
            pass

    Snoozes(Home(dotagent_home)).set("hooked", None, int(NOW.timestamp()) + 3600,
                                     NOW.timestamp())
    alerts = Alerts(Home(dotagent_home), Config(), Sender(), zone=UTC, hooks=hooks)
    alerts.sweep([with_state(_hooked(dotagent_home), **STALE)], NOW)
    assert hooks.calls == []
    assert not (dotagent_home / "state/notify/alerts.json").exists()


def test_plugin_hooks_notice_invokes_a_real_plugin_with_the_event(dotagent_home: Path,
                                                                  tmp_path: Path) -> None:
    env, record = _recording_plugin(tmp_path, "pager")
    entry = _hooked(dotagent_home)
    hooks = PluginHooks(Home(dotagent_home), AuditLog(Home(dotagent_home)), env)
    request = RunRequest(loaded=entry.loaded, schedule=entry.schedule, source="daemon")
    assert hooks.notice(request, "stale", "⏰ hooked/main is not being scheduled") == 1
    assert hooks.notice(request, "success", "fine") == 0  # the hook does not listen for it
    [payload] = [json.loads(b) for b in (p.read_bytes() for p in sorted(record.iterdir()))]
    assert payload["kind"] == "notify" and payload["event"] == "stale"
    assert payload["agent"] == "hooked" and payload["schedule"] == "main"
    assert payload["message"] == "⏰ hooked/main is not being scheduled"
    [invoked] = audit_events(dotagent_home, "plugin_invoked")
    assert invoked["plugin"] == "pager" and invoked["ok"] is True


def test_the_daemon_runs_alert_hooks_as_listed_notify_processes(dotagent_home: Path,
                                                                tmp_path: Path) -> None:
    """The daemon's hook runner: the real plugin gets the notice, and while it runs it is in
    the daemon's live registry (kind notify) so status lists it and shutdown can stop it."""
    from dotagent.daemon.loop import Daemon

    env, record = _recording_plugin(tmp_path, "pager")
    seen = tmp_path / "seen-in-registry"
    daemon = Daemon(Home(dotagent_home), Config(), env=env, zone=UTC, log=lambda text: None)
    original = daemon.spawned

    def spawned(message: Any, pid: int, argv: list[str], exe: str, deadline: float) -> None:
        original(message, pid, argv, exe, deadline)
        seen.write_text(json.dumps([p.kind for p in daemon._notify_procs.values()]))

    daemon.spawned = spawned  # type: ignore[method-assign]
    entry = with_state(_hooked(dotagent_home), **STALE)
    daemon._alert_hooks(entry, Message("stale", "hooked", "main", "⏰ stale"))
    [payload] = [json.loads(p.read_bytes()) for p in sorted(record.iterdir())]
    assert payload["event"] == "stale" and payload["message"] == "⏰ stale"
    assert json.loads(seen.read_text()) == ["notify"]
    assert daemon._notify_procs == {}  # gone from the registry once it exited
