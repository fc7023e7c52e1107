"""The outbox: ${VAR}, events filters, the empty-body rule, rate limits with an injected clock,
audit of every attempt, background delivery that never blocks, the email driver against a
real SMTP server (aiosmtpd) with and without STARTTLS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dotagent.audit import AuditLog
from dotagent.notify.base import Message, NotifyError, expand
from dotagent.notify.outbox import Outbox
from dotagent.notify.registry import NotifierConfigError, parse
from dotagent.paths import Home
from notify_kit import Endpoint, http_endpoint


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with http_endpoint() as ep:
        yield ep


def audit_events(home: Path, kind: str | None = None) -> list[dict[str, Any]]:
    path = home / "audit.log"
    if not path.exists():
        return []
    out = [json.loads(line)["event"] for line in path.read_text().splitlines() if line]
    return [e for e in out if kind is None or e["event_type"] == kind]


def box(home: Path, **kw: Any) -> Outbox:
    kw.setdefault("env", {})
    return Outbox(Home(home), AuditLog(Home(home)), **kw)


MSG = Message("attempt_failed", "nightly", "main", "nightly exited 1\nboom")


# --------------------------------------------------------------------------------------
# ${VAR}
# --------------------------------------------------------------------------------------
def test_expand_grammar() -> None:
    look = {"A": "1", "B": "two"}.get
    assert expand("x${A}y${B}$z", look, "f") == ("x1ytwo$z", ["1", "two"])
    with pytest.raises(NotifyError, match=r"^f: unterminated \$\{"):
        expand("abc${A", look, "f")
    with pytest.raises(NotifyError, match=r"^f: empty \$\{\}$"):
        expand("a${}b", look, "f")
    with pytest.raises(NotifyError, match=r"^f: env var \$\{NOPE\} is unset$"):
        expand("${NOPE}", look, "f")


def test_every_string_field_is_expanded_lookup_first(dotagent_home: Path,
                                                     endpoint: Endpoint) -> None:
    lookup = {"CHAN": "#from-store"}.get
    env = {"CHAN": "#from-env", "HOOK": endpoint.url + "/h", "USER": "bot"}
    outbox = box(dotagent_home, env=env,
                 lookup=lambda n: lookup(n) if lookup(n) is not None else env.get(n))
    [d] = outbox.send(MSG, [{"driver": "slack", "webhook_url": "${HOOK}", "channel": "${CHAN}",
                             "username": "${USER}-1"}])
    assert d.status == "sent", d.reason
    assert json.loads(endpoint.requests[0].body) == {
        "text": MSG.body, "channel": "#from-store", "username": "bot-1"}


def test_unset_variable_fails_loudly_and_never_sends_the_placeholder(
        dotagent_home: Path, endpoint: Endpoint) -> None:
    outbox = box(dotagent_home)
    [d] = outbox.send(MSG, [{"driver": "ntfy", "topic": "t", "base_url": endpoint.url,
                             "token": "${NTFY_TOKEN}"}])
    assert d.status == "failed" and d.reason == "token: env var ${NTFY_TOKEN} is unset"
    assert endpoint.requests == []
    [invoked] = audit_events(dotagent_home, "plugin_invoked")
    assert invoked["ok"] is False and invoked["plugin"] == "notifier:ntfy"
    [failed] = audit_events(dotagent_home, "notifier_failed")
    assert failed["reason"] == "token: env var ${NTFY_TOKEN} is unset"


def test_expanded_values_are_redacted_from_failures(dotagent_home: Path,
                                                    endpoint: Endpoint) -> None:
    endpoint.status = 403
    outbox = box(dotagent_home, env={"TOPIC_SECRET": "abcdef-secret-topic"})
    [d] = outbox.send(MSG, [{"driver": "ntfy", "topic": "${TOPIC_SECRET}",
                             "base_url": endpoint.url}])
    assert d.status == "failed"
    assert endpoint.requests[0].path == "/abcdef-secret-topic"
    assert "abcdef-secret-topic" not in (dotagent_home / "audit.log").read_text()


# --------------------------------------------------------------------------------------
# filters, bodies, validation
# --------------------------------------------------------------------------------------
def test_events_filter_and_empty_bodies(dotagent_home: Path, endpoint: Endpoint) -> None:
    outbox = box(dotagent_home)
    only_failures = {"driver": "webhook", "url": endpoint.url + "/f",
                     "events": ["attempt_failed"]}
    everything = {"driver": "webhook", "url": endpoint.url + "/all"}
    assert outbox.send(Message("success", "a", "s", "out"), [only_failures]) == []
    assert outbox.send(Message("success", "a", "s", "  \n"), [everything]) == []
    [d] = outbox.send(Message("timed_out", "a", "s", ""), [only_failures, everything])
    assert d.status == "sent"
    assert json.loads(endpoint.requests[0].body)["body"] == "a/s: timed_out (no output)"
    assert [r.path for r in endpoint.requests] == ["/all"]
    summary = outbox.send(Message("daily_summary", "", "", "📊"), [only_failures],
                          ignore_events=True)
    assert [x.status for x in summary] == ["sent"]


def test_a_bad_config_table_is_a_located_error_and_a_failed_delivery(
        dotagent_home: Path) -> None:
    with pytest.raises(NotifierConfigError, match=r"^config.toml \[\[notifiers\]\]\[0\]: "
                                                  r"webhook_url: "):
        parse({"driver": "slack", "webhook_url": "ftp://x"}, "config.toml [[notifiers]][0]")
    with pytest.raises(NotifierConfigError, match="unknown driver 'carrier-pigeon'"):
        parse({"driver": "carrier-pigeon"})
    [d] = box(dotagent_home).send(MSG, [{"driver": "pushover", "token": "t"}])
    assert d.status == "failed" and "user" in (d.reason or "")


# --------------------------------------------------------------------------------------
# rate limit
# --------------------------------------------------------------------------------------
def test_rate_limit_on_any_driver_with_an_injected_clock(dotagent_home: Path,
                                                         endpoint: Endpoint) -> None:
    now = [1_800_000_000.0]
    outbox = box(dotagent_home, clock=lambda: now[0])
    entry = {"driver": "webhook", "url": endpoint.url, "rate_limit_minutes": 10}
    assert outbox.send(MSG, [entry])[0].status == "sent"
    now[0] += 9 * 60 + 59
    [skipped] = outbox.send(MSG, [entry])
    assert skipped.status == "skipped" and skipped.reason.startswith("rate_limited until ")
    now[0] += 1
    assert outbox.send(MSG, [entry])[0].status == "sent"
    assert len(endpoint.requests) == 2
    [state] = list((dotagent_home / "state" / "notify" / "webhook").glob("*.json"))
    data = json.loads(state.read_text())
    assert list(data) == ["last_send_at", "last_send_iso", "driver"]
    assert data["last_send_at"] == int(now[0])
    assert (state.stat().st_mode & 0o777) == 0o600
    # a rate-limit skip is audited ok=true, without a notifier_failed
    assert [e["ok"] for e in audit_events(dotagent_home, "plugin_invoked")] == [True] * 3
    assert audit_events(dotagent_home, "notifier_failed") == []


def test_imessage_rate_limit_file_keeps_upstreams_shape(dotagent_home: Path,
                                                        tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "osascript").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "osascript").chmod(0o755)
    outbox = box(dotagent_home, env={"PATH": str(bindir)}, platform="darwin",
                 clock=lambda: 1_800_000_000.0)
    entry = {"driver": "imessage", "to": "+1 (555) 000", "rate_limit_minutes": 5}
    assert outbox.send(MSG, [entry])[0].status == "sent"
    path = dotagent_home / "state" / "notify" / "imessage" / "_1__555__000.json"
    data = json.loads(path.read_text())
    assert list(data) == ["last_send_at", "last_send_iso", "to"]
    assert data["to"] == "+1 (555) 000" and data["last_send_at"] == 1_800_000_000
    assert outbox.send(MSG, [entry])[0].status == "skipped"


def test_a_failed_send_does_not_start_the_rate_limit(dotagent_home: Path,
                                                     endpoint: Endpoint) -> None:
    endpoint.status = 502
    outbox = box(dotagent_home)
    entry = {"driver": "webhook", "url": endpoint.url, "rate_limit_minutes": 60}
    assert outbox.send(MSG, [entry])[0].status == "failed"
    endpoint.status = 200
    assert outbox.send(MSG, [entry])[0].status == "sent"


# --------------------------------------------------------------------------------------
# background mode
# --------------------------------------------------------------------------------------
def test_background_send_returns_at_once_and_the_queue_is_bounded(
        dotagent_home: Path, endpoint: Endpoint) -> None:
    endpoint.delay = 30  # answers only when released
    outbox = box(dotagent_home, background=True, workers=1, queue_limit=2)
    entry = {"driver": "webhook", "url": endpoint.url}
    started = time.monotonic()
    first = outbox.send(MSG, [entry])[0]
    endpoint.wait_requests(1)  # the one worker is now stuck on the slow endpoint
    more = [outbox.send(MSG, [entry])[0] for _ in range(4)]
    assert time.monotonic() - started < 5
    assert [d.status for d in more] == ["queued", "queued", "dropped", "dropped"]
    assert more[2].reason == "delivery queue full (2 waiting); dropped"
    endpoint.release.set()
    assert first.wait(10) and first.status == "sent"
    outbox.close(wait=True, timeout=10)
    assert [d.status for d in more[:2]] == ["sent", "sent"]
    assert len(audit_events(dotagent_home, "notifier_failed")) == 2


def test_foreground_waits_for_each_delivery(dotagent_home: Path, endpoint: Endpoint) -> None:
    endpoint.delay = 0.3
    outbox = box(dotagent_home)
    deliveries = outbox.send(MSG, [{"driver": "webhook", "url": endpoint.url},
                                   {"driver": "ping", "url": endpoint.url}])
    assert [d.status for d in deliveries] == ["sent", "sent"]


# --------------------------------------------------------------------------------------
# email against a real SMTP server
# --------------------------------------------------------------------------------------
def test_email_plain_smtp(dotagent_home: Path, smtp_server: dict[str, Any]) -> None:
    outbox = box(dotagent_home, env={"TO": "ops@example.com"})
    [d] = outbox.send(Message("given_up", "nightly", "main", "🚨 gave up", critical=True),
                      [{"driver": "email", "host": "127.0.0.1", "port": smtp_server["port"],
                        "from": "dotagent@example.com", "to": ["${TO}", "me@example.com"]}])
    assert d.status == "sent", d.reason
    [env] = smtp_server["received"]
    assert env.mail_from == "dotagent@example.com"
    assert env.rcpt_tos == ["ops@example.com", "me@example.com"]
    import email
    from email.policy import default
    mail = email.message_from_bytes(env.content, policy=default)
    assert mail["Subject"] == "dotagent: nightly/main given_up"
    assert mail.get_content().strip() == "🚨 gave up"


@pytest.mark.parametrize("smtp_server", [True], indirect=True)
def test_email_starttls_with_a_self_signed_cert(dotagent_home: Path,
                                                smtp_server: dict[str, Any]) -> None:
    entry = {"driver": "email", "host": "127.0.0.1", "port": smtp_server["port"],
             "from": "a@example.com", "to": ["b@example.com"], "starttls": True}
    outbox = box(dotagent_home)
    # The system's trust store does not know the test's certificate: refused, not downgraded.
    [refused] = outbox.send(MSG, [entry])
    assert refused.status == "failed" and "TLS" in (refused.reason or ""), refused.reason
    [d] = outbox.send(Message("success", "a", "s", "ok", title="Report"),
                      [{**entry, "ca_file": smtp_server["ca_file"]}])
    assert d.status == "sent", d.reason
    [env] = smtp_server["received"]
    assert b"Subject: Report" in env.content


def test_email_starttls_required_but_not_offered(dotagent_home: Path,
                                                 smtp_server: dict[str, Any]) -> None:
    [d] = box(dotagent_home).send(MSG, [{"driver": "email", "host": "127.0.0.1",
                                         "port": smtp_server["port"], "from": "a@x.org",
                                         "to": ["b@x.org"], "starttls": True}])
    assert d.status == "failed"
    assert d.reason == "127.0.0.1 does not offer STARTTLS (starttls = true)"
    assert smtp_server["received"] == []


def test_threads_are_daemon_threads(dotagent_home: Path, endpoint: Endpoint) -> None:
    outbox = box(dotagent_home, background=True)
    outbox.send(MSG, [{"driver": "webhook", "url": endpoint.url}])
    workers = [t for t in threading.enumerate() if t.name == "dotagent-notify"]
    assert workers and all(t.daemon for t in workers)
    outbox.close(wait=True, timeout=10)


def test_email_to_a_trickling_smtp_server_ends_at_its_timeout(dotagent_home: Path) -> None:
    """Each answer arrives within the per-read timeout, a byte at a time: smtplib alone
    would wait for ever; the entry's `timeout_seconds` bounds the whole conversation."""
    import socket

    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"220 slow.example ESMTP\r\n")
            conn.recv(1024)  # EHLO
            while not stop.is_set():
                try:
                    conn.sendall(b"2")  # never a whole line
                except OSError:
                    return
                stop.wait(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        [d] = box(dotagent_home).send(MSG, [{"driver": "email", "host": "127.0.0.1",
                                             "port": port, "from": "a@x.org",
                                             "to": ["b@x.org"], "timeout_seconds": 1}])
    finally:
        stop.set()
        server.close()
    elapsed = time.monotonic() - started
    assert d.status == "failed"
    assert d.reason == "127.0.0.1 did not finish within 1s", d.reason
    assert elapsed < 1 + 2.0  # the deadline plus the outbox's margin, not "for ever"
