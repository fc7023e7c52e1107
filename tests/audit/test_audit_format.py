"""Line format: byte-compatible with upstream's serde_json output, chain over raw bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dotagent import redaction
from dotagent.audit import GENESIS, AuditLog, Severity, events
from dotagent.audit.record import render_line
from dotagent.paths import Home

TS = "2026-05-19T14:30:01-0300"


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def test_agent_run_line_matches_upstream_bytes() -> None:
    ev = events.AgentRun(agent="inbox", schedule="morning", slug="default",
                         manifest_sha256="ab" * 32, exit_code=0, duration_seconds=12,
                         timed_out=False)
    line = render_line(ev, ts=TS, prev_hash=GENESIS)
    assert line == (
        b'{"ts":"2026-05-19T14:30:01-0300","severity":"notice","event":{"event_type":"agent_run",'
        b'"agent":"inbox","schedule":"morning","slug":"default","manifest_sha256":"'
        + b"ab" * 32 + b'","exit_code":0,"duration_seconds":12,"timed_out":false},'
        b'"prev_hash":"GENESIS"}')


def test_agent_run_severity_and_dry_run_field() -> None:
    failed = events.AgentRun(agent="a", schedule="s", slug="d", exit_code=2,
                             duration_seconds=1, timed_out=False)
    assert failed.severity is Severity.CRITICAL
    dry = events.AgentRun(agent="a", schedule="s", slug="d", exit_code=0, duration_seconds=1,
                          timed_out=False, dry_run=True)
    text = render_line(dry, ts=TS, prev_hash=GENESIS)
    assert text.endswith(b'"timed_out":false,"dry_run":true},"prev_hash":"GENESIS"}')
    assert b"dry_run" not in render_line(failed, ts=TS, prev_hash=GENESIS)


def test_escapes_match_serde_json() -> None:
    # serde_json: \" \\ \n \r \t \b \f short escapes, other C0 controls as lowercase \u00XX,
    # DEL, '/', U+2028 and non-ASCII written raw.
    tail = 'q"b\\n\nr\rt\tb\bf\fe\x1bz\x00d\x7fs/u\u2028é😀'
    ev = events.AgentGivenUp(agent="a", schedule="s", attempts=3, stderr_tail=tail)
    line = render_line(ev, ts=TS, prev_hash=GENESIS)
    expected = ('"stderr_tail":"q\\"b\\\\n\\nr\\rt\\tb\\bf\\fe\\u001bz\\u0000d\x7fs/u\u2028é😀"'
                ).encode()
    assert expected in line
    assert b'"last_exit":-1,' in line
    assert json.loads(line)["event"]["stderr_tail"] == tail


def test_optionals_are_null_and_lone_surrogates_replaced() -> None:
    line = render_line(events.PreflightFailed(agent="a", schedule="s", plugin="p"), ts=TS,
                       prev_hash=GENESIS)
    assert b'"plugin":"p","suggest":null}' in line
    broken = render_line(events.DaemonStopped(reason="bad \udcff byte"), ts=TS,
                         prev_hash=GENESIS)
    assert "bad \ufffd byte".encode() in broken


def test_floats_refused() -> None:
    ev = events.AgentRun(agent="a", schedule="s", slug="d", exit_code=0,
                         duration_seconds=1.5,  # type: ignore[arg-type]
                         timed_out=False)
    with pytest.raises(TypeError):
        render_line(ev, ts=TS, prev_hash=GENESIS)


def test_every_event_type_is_defined_once() -> None:
    upstream = {"daemon_started", "daemon_stopped", "tick_started", "tick_completed",
                "agent_run", "agent_recovered", "agent_given_up", "preflight_failed",
                "plugin_invoked", "manifest_loaded", "manifest_drift_detected",
                "phantom_agent_detected", "audit_chain_broken", "config_reloaded",
                "secrets_loaded", "secrets_refused", "orphan_reaped", "audit_log_rotated"}
    ours = {"manifest_invalid", "manifest_cache_missing", "plugin_drift_detected",
            "selfcheck_failed", "audit_repaired", "window_missed", "run_skipped_overlap",
            "run_interrupted", "notifier_failed", "command_not_allowed", "plugin_not_allowed",
            "sandbox_unavailable", "manifest_signature_invalid", "agent_approved",
            "selfcheck_recorded", "audit_break_acknowledged", "duration_anomaly",
            "agent_snoozed", "agent_paused", "agent_resumed", "windows_bootstrapped"}
    assert set(events.EVENT_TYPES) == upstream | ours
    assert {t for t, cls in events.EVENT_TYPES.items() if cls.upstream} == upstream


def test_upstream_field_order() -> None:
    order = {
        "tick_completed": ["agents_scanned", "runs_dispatched", "next_event_iso"],
        # + ours after upstream's: `reason`, only written when set
        "agent_given_up": ["agent", "schedule", "attempts", "last_exit", "stderr_tail",
                           "reason"],
        "plugin_invoked": ["agent", "plugin", "plugin_kind", "ok"],
        "manifest_drift_detected": ["agent", "path", "expected_sha256", "actual_sha256"],
        "audit_chain_broken": ["position", "expected_prev_hash", "actual_prev_hash", "kind",
                               "line", "detail", "segment"],
        "audit_log_rotated": ["rotated_to", "entries", "first_ts", "tail_hash"],
        "secrets_loaded": ["path", "key_count", "unresolved_references"],
        "orphan_reaped": ["agent", "kind", "label", "pid", "age_seconds", "deadline_seconds"],
    }
    for name, fields in order.items():
        cls = events.EVENT_TYPES[name]
        assert [f.name for f in dataclasses.fields(cls)] == fields, name
    assert events.PluginInvoked(agent="a", plugin="p", plugin_kind="sink",
                                ok=False).severity is Severity.NOTICE


def test_ts_is_local_iso_without_colon(dotagent_home: Path) -> None:
    log = AuditLog(Home.from_env())
    line = log.append(events.TickStarted(agents_scanned=1))
    assert re.match(r'\{"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}","severity":"info",', line)
    moment = datetime(2026, 5, 19, 14, 30, 1, tzinfo=timezone(timedelta(hours=-3)))
    line = log.append(events.TickStarted(agents_scanned=1), now=moment)
    local = moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    assert line.startswith(f'{{"ts":"{local}"')


def test_continues_an_upstream_log(dotagent_home: Path) -> None:
    """Hand-written upstream lines: hashes come from the raw bytes, and we chain on."""
    raw = [
        b'{"ts":"2026-05-18T09:00:00-0300","severity":"info","event":{"event_type":'
        b'"daemon_started","version":"0.1.3","pid":4242},"prev_hash":"GENESIS"}',
        b'{"ts":"2026-05-18T09:00:00-0300","severity":"info","event":{"event_type":'
        b'"tick_started","agents_scanned":2},"prev_hash":"%s"}',
        '{"ts":"2026-05-18T09:00:03-0300","severity":"notice","event":{"event_type":'
        '"agent_run","agent":"relatório","schedule":"manhã","slug":"default",'
        '"manifest_sha256":"","exit_code":0,"duration_seconds":3,"timed_out":false},'
        '"prev_hash":"%s"}'.encode(),
    ]
    lines: list[bytes] = []
    for template in raw:
        line = template % sha(lines[-1]).encode() if lines else template
        lines.append(line)
    home = Home.from_env()
    home.audit_log.write_bytes(b"\n".join(lines) + b"\n")

    log = AuditLog(home)
    report = log.verify()
    assert report.ok and report.lines == 3 and report.breaks == []
    # Adopted with a notice (S15.9): a log that never had a head is not a break.
    adopted = home.audit_log.read_bytes().splitlines()[3]
    entry = json.loads(adopted)
    assert entry["severity"] == "notice" and entry["prev_hash"] == sha(lines[-1])
    assert entry["event"]["event_type"] == "audit_repaired"
    assert "adopted the existing log of 3 entries" in entry["event"]["reason"]
    assert log.head() is not None and log.head().count == 4  # type: ignore[union-attr]

    written = log.append(events.TickCompleted(agents_scanned=2, runs_dispatched=1))
    assert written.endswith(f'"next_event_iso":null}},"prev_hash":"{sha(adopted)}"}}')
    data = home.audit_log.read_bytes()
    assert data.startswith(b"\n".join(lines) + b"\n")  # upstream bytes untouched
    assert log.verify().ok
    assert log.current_head() == (5, sha(written.encode()))


def test_upstream_log_without_head_adopted_on_append(dotagent_home: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    first = (b'{"ts":"2026-05-18T09:00:00-0300","severity":"info","event":{"event_type":'
             b'"daemon_stopped","reason":"SIGTERM"},"prev_hash":"GENESIS"}')
    home = Home.from_env()
    home.audit_log.write_bytes(first + b"\n")
    log = AuditLog(home)
    line = log.append(events.ConfigReloaded())
    notice = home.audit_log.read_bytes().splitlines()[1]
    assert b'"severity":"notice","event":{"event_type":"audit_repaired"' in notice
    assert notice.endswith(f'"prev_hash":"{sha(first)}"}}'.encode())
    assert line.endswith(f'"prev_hash":"{sha(notice)}"}}')
    assert "adopted" in caplog.text
    assert log.head() is not None and log.head().count == 3  # type: ignore[union-attr]
    assert log.verify().ok


def test_redacts_registered_secrets_in_every_string(dotagent_home: Path) -> None:
    redaction.clear_secrets()
    try:
        redaction.register_secret("hunter2-token")
        redaction.register_secret("abc")  # too short: never scrubbed
        log = AuditLog(Home.from_env())
        line = log.append(events.AgentGivenUp(
            agent="a", schedule="s", attempts=3,
            stderr_tail="auth failed for hunter2-token (abc)"))
        assert "hunter2-token" not in line
        assert "auth failed for [REDACTED] (abc)" in line
        assert "hunter2-token" not in Home.from_env().audit_log.read_text()
        assert log.verify().ok
    finally:
        redaction.clear_secrets()


def test_redact_prefers_longest_secret() -> None:
    redaction.clear_secrets()
    try:
        redaction.register_secrets(["token", "token-extended"])
        assert redaction.redact("x token-extended y token") == "x [REDACTED] y [REDACTED]"
        assert redaction.redact("") == ""
    finally:
        redaction.clear_secrets()
    assert redaction.redact("token") == "token"
