"""Each HTTP driver's request, as a real HTTP server on 127.0.0.1 receives it (S5, and the
length caps of UPSTREAM-0.6 §8); desktop through a fake notify-send on PATH."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dotagent.audit import AuditLog
from dotagent.notify.base import Message
from dotagent.notify.ntfy import header_text
from dotagent.notify.outbox import Delivery, Outbox
from dotagent.notify.telegram import escape_markdown_v2
from dotagent.paths import Home
from notify_kit import Endpoint, http_endpoint


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with http_endpoint() as ep:
        yield ep


def audit_events(home: Path) -> list[dict[str, Any]]:
    path = home / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line)["event"] for line in path.read_text().splitlines() if line]


def outbox(home: Path, env: dict[str, str] | None = None, **kw: Any) -> Outbox:
    return Outbox(Home(home), AuditLog(Home(home)), env=env or {}, **kw)


def send(home: Path, entry: dict[str, Any], body: str = "hello", *, event: str = "success",
         title: str | None = None, env: dict[str, str] | None = None,
         **kw: Any) -> Delivery:
    box = outbox(home, env, **kw)
    try:
        [delivery] = box.send(Message(event, "nightly", "main", body, title), [entry])
    finally:
        box.close()
    return delivery


def test_slack_posts_text_and_optionals(dotagent_home: Path, endpoint: Endpoint) -> None:
    d = send(dotagent_home, {"driver": "slack", "webhook_url": endpoint.url + "/hook/T0K3N",
                             "channel": "#ops", "username": "bot"}, "done ✓")
    assert d.status == "sent", d.reason
    [req] = endpoint.requests
    assert (req.method, req.path) == ("POST", "/hook/T0K3N")
    assert req.headers["content-type"] == "application/json"
    assert list(json.loads(req.body)) == ["text", "channel", "username"]
    assert json.loads(req.body) == {"text": "done ✓", "channel": "#ops", "username": "bot"}
    events = audit_events(dotagent_home)
    assert {"event_type": "plugin_invoked", "agent": "nightly", "plugin": "notifier:slack",
            "plugin_kind": "notify", "ok": True}.items() <= events[-1].items()


def test_slack_caps_at_40000_characters(dotagent_home: Path, endpoint: Endpoint) -> None:
    send(dotagent_home, {"driver": "slack", "webhook_url": endpoint.url}, "é" * 50_000)
    text = json.loads(endpoint.requests[0].body)["text"]
    assert len(text) == 40_000 and text.endswith("\n[truncated]")
    assert text == "é" * (40_000 - 12) + "\n[truncated]"


def test_slack_non_2xx_is_a_failure_without_the_url(dotagent_home: Path,
                                                     endpoint: Endpoint) -> None:
    endpoint.status = 500
    d = send(dotagent_home, {"driver": "slack", "webhook_url": endpoint.url + "/T0K3N"})
    assert (d.status, d.reason) == ("failed", "slack webhook returned 500")
    failed = [e for e in audit_events(dotagent_home) if e["event_type"] == "notifier_failed"]
    assert failed[-1]["reason"] == "slack webhook returned 500"
    assert "T0K3N" not in (dotagent_home / "audit.log").read_text()


def test_ntfy_headers_and_byte_caps(dotagent_home: Path, endpoint: Endpoint) -> None:
    d = send(dotagent_home, {"driver": "ntfy", "topic": "alerts", "base_url": endpoint.url + "/",
                             "token": "tk_abc", "priority": "high", "tags": ["warning", "x"]},
             "€" * 2000)
    assert d.status == "sent", d.reason
    [req] = endpoint.requests
    assert (req.method, req.path) == ("POST", "/alerts")
    assert req.headers["authorization"] == "Bearer tk_abc"
    assert req.headers["x-priority"] == "high"
    assert req.headers["x-title"] == "nightly"  # the agent when no title is set
    assert req.headers["x-tags"] == "warning,x"
    # 4,096 bytes: 4,084 bytes walked back to a character boundary (3-byte €), + the mark.
    assert len(req.body) <= 4096 and req.body.endswith(b"\n[truncated]")
    assert req.body == ("€" * (4084 // 3)).encode() + b"\n[truncated]"


def test_ntfy_non_ascii_title_is_rfc2047(dotagent_home: Path, endpoint: Endpoint) -> None:
    send(dotagent_home, {"driver": "ntfy", "topic": "t", "base_url": endpoint.url,
                         "title": "Relatório diário\tok", "tags": ["ação"]})
    req = endpoint.requests[0]
    assert req.headers["x-title"] == "=?UTF-8?Q?Relat=C3=B3rio_di=C3=A1rio_ok?="
    assert req.headers["x-tags"] == "=?UTF-8?Q?a=C3=A7=C3=A3o?="
    # decodes back to the text (control characters became spaces)
    from email.header import decode_header
    raw, charset = decode_header(req.headers["x-title"])[0]
    assert isinstance(raw, bytes) and raw.decode(charset or "ascii") == "Relatório diário ok"


def test_ntfy_title_capped_at_250_bytes_before_encoding(dotagent_home: Path,
                                                       endpoint: Endpoint) -> None:
    send(dotagent_home, {"driver": "ntfy", "topic": "t", "base_url": endpoint.url,
                         "title": "a" * 300})
    assert endpoint.requests[0].headers["x-title"] == header_text("a" * 247 + "…")
    assert len(("a" * 247 + "…").encode()) == 250


def test_pushover_form_and_caps(dotagent_home: Path, endpoint: Endpoint) -> None:
    d = send(dotagent_home, {"driver": "pushover", "token": "apptoken", "user": "u1",
                             "priority": 1, "title": "T" * 300, "base_url": endpoint.url},
             "b" * 2000)
    assert d.status == "sent", d.reason
    [req] = endpoint.requests
    assert (req.method, req.path) == ("POST", "/1/messages.json")
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qsl(req.body.decode())
    assert [k for k, _ in form] == ["token", "user", "message", "priority", "title"]
    values = dict(form)
    assert values["token"] == "apptoken" and values["user"] == "u1"
    assert values["priority"] == "1"
    assert values["message"] == "b" * (1024 - 12) + "\n[truncated]"
    assert values["title"] == "T" * 249 + "…"


def test_telegram_markdown_v2_escaped_before_the_cut(dotagent_home: Path,
                                                     endpoint: Endpoint) -> None:
    token = "123456:SECRET-bot-token"
    d = send(dotagent_home, {"driver": "telegram", "bot_token": "${TG_TOKEN}",
                             "chat_id": 42, "parse_mode": "MarkdownV2",
                             "disable_notification": True, "base_url": endpoint.url},
             "a.b" + "x" * 4079 + "." * 20, env={"TG_TOKEN": token})
    assert d.status == "sent", d.reason
    [req] = endpoint.requests
    assert req.path == f"/bot{token}/sendMessage"
    body = json.loads(req.body)
    assert list(body) == ["chat_id", "text", "parse_mode", "disable_notification"]
    assert body["chat_id"] == 42 and body["disable_notification"] is True
    text = body["text"]
    assert text.startswith("a\\.b") and len(text) <= 4096
    notice = escape_markdown_v2("\n[truncated]")
    assert text.endswith(notice)
    kept = text[: -len(notice)]
    # never a dangling backslash: the escaped '.' pairs stay whole
    assert (len(kept) - len(kept.rstrip("\\"))) % 2 == 0


def test_telegram_plain_and_failure_hides_the_token(dotagent_home: Path,
                                                    endpoint: Endpoint) -> None:
    endpoint.status = 401
    d = send(dotagent_home, {"driver": "telegram", "bot_token": "999:TOPSECRETVALUE",
                             "chat_id": "@chan", "base_url": endpoint.url}, "x_y")
    assert d.status == "failed" and d.reason == "telegram returned 401"
    assert json.loads(endpoint.requests[0].body) == {"chat_id": "@chan", "text": "x_y"}
    assert "TOPSECRETVALUE" not in (dotagent_home / "audit.log").read_text()


def test_webhook_signed(dotagent_home: Path, endpoint: Endpoint) -> None:
    d = send(dotagent_home, {"driver": "webhook", "url": endpoint.url + "/in",
                             "secret": "${HOOK_SECRET}"}, "ran", event="success",
             env={"HOOK_SECRET": "s3cr3t-value"}, clock=lambda: 1_700_000_000.5)
    assert d.status == "sent", d.reason
    [req] = endpoint.requests
    assert req.path == "/in"
    data = json.loads(req.body)
    assert list(data) == ["event", "agent", "schedule", "title", "body", "critical", "sent_at"]
    assert data == {"event": "success", "agent": "nightly", "schedule": "main", "title": None,
                    "body": "ran", "critical": False, "sent_at": 1_700_000_000}
    assert req.headers["x-dotagent-timestamp"] == "1700000000"
    expected = hmac.new(b"s3cr3t-value", req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-dotagent-signature"] == f"sha256={expected}"


@pytest.mark.parametrize(("event", "path"), [("success", "/ping/abc"),
                                             ("recovered", "/ping/abc"),
                                             ("attempt_failed", "/ping/abc/fail"),
                                             ("timed_out", "/ping/abc/fail"),
                                             ("given_up", "/ping/abc/fail")])
def test_ping_paths(dotagent_home: Path, endpoint: Endpoint, event: str, path: str) -> None:
    d = send(dotagent_home, {"driver": "ping", "url": endpoint.url + "/ping/abc"}, "log",
             event=event)
    assert d.status == "sent", d.reason
    assert [(r.method, r.path, r.body) for r in endpoint.requests] == [("POST", path, b"log")]


@pytest.mark.parametrize("event,path", [("attempt_failed", "/ping/abc/fail?create=1&rid=7"),
                                        ("start", "/ping/abc/start?create=1&rid=7"),
                                        ("success", "/ping/abc?create=1&rid=7")])
def test_ping_keeps_the_query_after_its_path(dotagent_home: Path, endpoint: Endpoint,
                                             event: str, path: str) -> None:
    """A check URL with a query (healthchecks' `?create=1`, a run id): `/fail` goes on the
    path, not after the query, where the service would take the failure for a success."""
    d = send(dotagent_home, {"driver": "ping", "url": endpoint.url + "/ping/abc/?create=1&rid=7"},
             "log", event=event)
    assert d.status == "sent", d.reason
    assert [r.path for r in endpoint.requests] == [path]


def test_ping_ignores_events_that_are_not_check_results(dotagent_home: Path,
                                                        endpoint: Endpoint) -> None:
    d = send(dotagent_home, {"driver": "ping", "url": endpoint.url}, "s", event="daily_summary")
    assert d.status == "sent" and endpoint.requests == []


def test_an_endpoint_that_never_answers_is_bounded_by_timeout_seconds(
        dotagent_home: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepts connections, never answers
    try:
        port = listener.getsockname()[1]
        d = send(dotagent_home, {"driver": "slack", "webhook_url": f"http://127.0.0.1:{port}",
                                 "timeout_seconds": 1})
    finally:
        listener.close()
    assert d.status == "failed" and "1s" in (d.reason or ""), d.reason


# --------------------------------------------------------------------------------------
# desktop
# --------------------------------------------------------------------------------------
def fake_tool(bindir: Path, name: str, record: Path) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / name
    script.write_text(f"#!{sys.executable}\n"
                      "import json, os, sys\n"
                      f"with open({str(record)!r}, 'a') as f:\n"
                      "    f.write(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)})"
                      " + '\\n')\n")
    script.chmod(0o755)


def calls(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_desktop_notify_send_finds_the_session_bus(dotagent_home: Path,
                                                   tmp_path: Path) -> None:
    bindir, record, runtime = tmp_path / "bin", tmp_path / "calls.jsonl", tmp_path / "run"
    fake_tool(bindir, "notify-send", record)
    runtime.mkdir()
    bus = socket.socket(socket.AF_UNIX)
    bus.bind(str(runtime / "bus"))
    try:
        env = {"PATH": str(bindir)}  # a daemon's bare environment: no bus, no display
        d = send(dotagent_home, {"driver": "desktop", "urgency": "critical", "icon": "dialog",
                                 "expire_ms": 5000}, "it broke\nline 2", event="given_up",
                 env=env, platform="linux", runtime_dir=runtime)
    finally:
        bus.close()
    assert d.status == "sent", d.reason
    [call] = calls(record)
    assert call["argv"] == ["--app-name=dotagent", "--urgency=critical", "--icon=dialog",
                            "--expire-time=5000", "--", "nightly", "it broke\nline 2"]
    assert call["env"]["DBUS_SESSION_BUS_ADDRESS"] == f"unix:path={runtime / 'bus'}"
    assert call["env"]["XDG_RUNTIME_DIR"] == str(runtime)


def test_desktop_keeps_a_session_it_already_has(dotagent_home: Path, tmp_path: Path) -> None:
    bindir, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    fake_tool(bindir, "notify-send", record)
    env = {"PATH": str(bindir), "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x/bus",
           "DISPLAY": ":7"}
    d = send(dotagent_home, {"driver": "desktop", "title": "T"}, "b", env=env,
             platform="linux", runtime_dir=tmp_path)
    assert d.status == "sent"
    [call] = calls(record)
    assert call["argv"] == ["--app-name=dotagent", "--urgency=normal", "--", "T", "b"]
    assert call["env"]["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/x/bus"
    assert call["env"]["DISPLAY"] == ":7"


def test_desktop_falls_back_to_gdbus(dotagent_home: Path, tmp_path: Path) -> None:
    bindir, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    fake_tool(bindir, "gdbus", record)
    d = send(dotagent_home, {"driver": "desktop"}, "it's done", env={"PATH": str(bindir)},
             platform="linux", runtime_dir=tmp_path)
    assert d.status == "sent", d.reason
    argv = calls(record)[0]["argv"]
    assert argv[:8] == ["call", "--session", "--dest", "org.freedesktop.Notifications",
                        "--object-path", "/org/freedesktop/Notifications", "--method",
                        "org.freedesktop.Notifications.Notify"]
    assert argv[8:] == ["--", "'dotagent'", "uint32 0", "''", "'nightly'", "'it\\'s done'",
                        "@as []", "{'urgency': <byte 1>}", "int32 -1"]


def test_desktop_gdbus_call_reaches_a_real_session_bus(dotagent_home: Path,
                                                       tmp_path: Path) -> None:
    # Before: the default expiry `-1` was parsed by gdbus as an option; it printed its usage
    # and the fallback never sent anything (the reason shown was a line of that usage).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gdbus").symlink_to(shutil.which("gdbus") or "/usr/bin/gdbus")
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    monitor = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        log = tmp_path / "monitor.log"
        with log.open("w") as out:
            monitor = subprocess.Popen(["dbus-monitor", "--address", address,
                                        "interface='org.freedesktop.Notifications'"],
                                       stdout=out, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while "NameAcquired" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {"PATH": str(bindir), "DBUS_SESSION_BUS_ADDRESS": address}
        d = send(dotagent_home, {"driver": "desktop", "title": "T"}, "body -1", env=env,
                 platform="linux", runtime_dir=tmp_path)
        while "member=Notify" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for proc in (monitor, bus):
            if proc is not None:
                proc.terminate()
                proc.wait(5)
    seen = log.read_text()
    call = seen[seen.index("member=Notify"):]
    for line in ('string "dotagent"', "uint32 0", 'string "T"', 'string "body -1"',
                 "int32 -1"):
        assert line in call, seen
    # No notification service on this private bus: the reason is the bus's answer.
    assert d.status == "failed"
    assert d.reason is not None and "ServiceUnknown" in d.reason, d.reason


def test_desktop_without_any_tool_fails_clearly(dotagent_home: Path, tmp_path: Path) -> None:
    d = send(dotagent_home, {"driver": "desktop"}, env={"PATH": str(tmp_path)},
             platform="linux")
    assert d.status == "failed"
    assert d.reason == "no notification tool found (notify-send, gdbus, dbus-send)"


def test_a_desktop_tool_that_hangs_is_stopped_with_everything_it_started(
        dotagent_home: Path, tmp_path: Path) -> None:
    # Before: the tool alone was killed at the timeout; a helper it had started (a shell
    # wrapper's child) lived on. Now its whole group is stopped.
    import os
    import signal

    bindir, pidfile = tmp_path / "bin", tmp_path / "child.pid"
    bindir.mkdir()
    tool = bindir / "notify-send"
    tool.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    tool.chmod(0o755)
    d = send(dotagent_home, {"driver": "desktop", "timeout_seconds": 1},
             env={"PATH": f"{bindir}:/usr/bin:/bin", "DBUS_SESSION_BUS_ADDRESS": "unix:x"},
             platform="linux")
    assert d.status == "failed"
    assert d.reason == "notify-send did not finish within 1s"
    child = int(pidfile.read_text())
    try:  # gone, or a zombie waiting for whoever reaps orphans here
        state = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        state = "gone"
    if state not in ("gone", "Z", "X"):
        os.kill(child, signal.SIGKILL)
        raise AssertionError(f"the tool's child outlived the delivery (state {state})")


def test_imessage_off_macos_is_a_clear_failure(dotagent_home: Path) -> None:
    d = send(dotagent_home, {"driver": "imessage", "to": "+15550001"}, platform="linux")
    assert d.status == "failed"
    assert d.reason == "imessage needs macOS (Messages.app); it cannot send from linux"


def test_imessage_on_macos_runs_osascript(dotagent_home: Path, tmp_path: Path) -> None:
    bindir, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    fake_tool(bindir, "osascript", record)
    d = send(dotagent_home, {"driver": "imessage", "to": "me@example.com"}, 'say "hi" \\',
             env={"PATH": str(bindir)}, platform="darwin")
    assert d.status == "sent", d.reason
    argv = calls(record)[0]["argv"]
    assert argv[0] == "-e"
    assert 'participant "me@example.com" of targetService' in argv[1]
    assert 'send "say \\"hi\\" \\\\" to targetBuddy' in argv[1]



def test_plugin_driver(dotagent_home: Path, tmp_path: Path) -> None:
    """Through the plugin client when this build has it (brief P); else a clear failure."""
    plugins, record = tmp_path / "plugins", tmp_path / "payload.json"
    plugins.mkdir()
    plugin = plugins / "dotagent-plugin-notify-rec"
    plugin.write_text(f"#!{sys.executable}\n"
                      "import sys\n"
                      f"open({str(record)!r}, 'w').write(sys.stdin.read())\n"
                      "print('{\"ok\": true}')\n")
    plugin.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", ""), "DOTAGENT_PLUGIN_PATH": str(plugins),
           "HOME": str(tmp_path), "DOTAGENT_HOME": str(dotagent_home)}
    d = send(dotagent_home, {"driver": "plugin", "name": "notify-rec",
                             "config": {"room": "${ROOM}"}}, "body", event="given_up",
             env={**env, "ROOM": "ops"})
    try:
        import dotagent.plugins.client  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        assert d.status == "failed" and "needs dotagent.plugins" in (d.reason or "")
        return
    assert d.status == "sent", d.reason
    payload = json.loads(record.read_text())
    assert list(payload) == ["kind", "agent", "schedule", "event", "message", "config"]
    assert payload == {"kind": "notify", "agent": "nightly", "schedule": "main",
                       "event": "given_up", "message": "body", "config": {"room": "ops"}}


def test_userinfo_in_a_url_is_sent_as_basic_auth_and_never_recorded(
        dotagent_home: Path, endpoint: Endpoint) -> None:
    # Before: urllib took `user:pass@127.0.0.1` for the host name ("Name or service not known").
    host = endpoint.url.removeprefix("http://")
    d = send(dotagent_home, {"driver": "webhook", "url": f"http://bob:${{PW}}@{host}/in"},
             env={"PW": "pa55w0rd-xyz"})
    assert d.status == "sent", d.reason
    [req] = endpoint.requests
    assert req.path == "/in"
    assert req.headers["authorization"] == "Basic " + base64.b64encode(b"bob:pa55w0rd-xyz").decode()
    assert "pa55w0rd-xyz" not in (dotagent_home / "audit.log").read_text()


def test_a_header_value_with_a_newline_fails_without_showing_it(
        dotagent_home: Path, endpoint: Endpoint) -> None:
    d = send(dotagent_home, {"driver": "ntfy", "topic": "t", "base_url": endpoint.url,
                             "token": "${TK}"}, env={"TK": "tk_line1\nX-Evil: 1"})
    assert d.status == "failed"
    assert d.reason == "request failed: invalid header value"
    assert endpoint.requests == []
    assert "tk_line1" not in (dotagent_home / "audit.log").read_text()


def test_an_endpoint_that_trickles_its_answer_is_cut_at_the_timeout(dotagent_home: Path) -> None:
    # Before: urllib's timeout bounds each socket read, so an answer sent a byte every
    # 0.2 s held a 1 s delivery for as long as the endpoint liked (a daemon worker with it).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    _cut_at_one_second(dotagent_home, "http", server, stop, serve)


def _cut_at_one_second(home: Path, scheme: str, server: socket.socket, stop: threading.Event,
                       serve: Callable[[], None]) -> None:
    """A webhook delivery with `timeout_seconds = 1` to `server` (answered by `serve` on its
    own thread) fails as "no answer within 1s", well before the trickle would end."""
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        d = send(home, {"driver": "webhook",
                        "url": f"{scheme}://127.0.0.1:{server.getsockname()[1]}/in",
                        "timeout_seconds": 1})
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
        thread.join(5)
    assert (d.status, d.reason) == ("failed", "no answer within 1s")
    assert elapsed < 4, elapsed


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_an_https_endpoint_that_trickles_its_answer_is_cut_at_the_timeout(
        dotagent_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every real endpoint is https. The TLS wrap detached the socket the deadline held, so
    shutting it down did nothing: a byte every 0.2 s held a 1 s delivery for ever."""
    import ssl
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # urllib's default context trusts it
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        raw, _ = server.accept()
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not stop.wait(0.2):
                    conn.sendall(b"x")
        except OSError:
            return

    _cut_at_one_second(dotagent_home, "https", server, stop, serve)


def test_email_to_a_server_that_stalls_the_tls_handshake_ends_at_its_timeout(
        dotagent_home: Path) -> None:
    """STARTTLS accepted, then the handshake trickles (a record header announcing 16 KiB,
    then a byte every 0.2 s): each read is within smtplib's timeout, the whole is not."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            try:
                conn.sendall(b"220 slow.example ESMTP\r\n")
                conn.recv(1024)  # EHLO
                conn.sendall(b"250-slow.example\r\n250 STARTTLS\r\n")
                conn.recv(1024)  # STARTTLS
                conn.sendall(b"220 go ahead\r\n")
                conn.recv(4096)  # ClientHello
                conn.sendall(b"\x16\x03\x03\x40\x00")
                while not stop.wait(0.2):
                    conn.sendall(b"\x00")
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        d = send(dotagent_home, {"driver": "email", "host": "127.0.0.1",
                                 "port": server.getsockname()[1], "from": "a@x.org",
                                 "to": ["b@x.org"], "timeout_seconds": 1})
    finally:
        stop.set()
        server.close()
        thread.join(5)
    elapsed = time.monotonic() - started
    assert (d.status, d.reason) == ("failed", "127.0.0.1 did not finish within 1s")
    assert elapsed < 4, elapsed
