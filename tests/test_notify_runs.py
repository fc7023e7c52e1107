"""Notifiers in the run lifecycle: run-now delivers S3.5's messages and waits for them; a
failing endpoint leaves the run's outcome unchanged and is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notify_kit import Endpoint, http_endpoint

from helpers import dotagent, write_agent


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with http_endpoint() as ep:
        yield ep


def audit_events(home: Path, kind: str) -> list[dict[str, Any]]:
    lines = (home / "audit.log").read_text().splitlines()
    return [e for e in (json.loads(x)["event"] for x in lines if x) if e["event_type"] == kind]


def agent(home: Path, script: str, notifiers: str) -> None:
    write_agent(home / "agents", "nightly", f"""
        [agent]
        name = "nightly"
        [run]
        command = "./run.sh"
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        {notifiers}
        """, files={"run.sh": f"#!/bin/sh\n{script}\n"})


def test_run_now_sends_the_failure_message(dotagent_home: Path, cli_env: dict[str, str],
                                           endpoint: Endpoint) -> None:
    agent(dotagent_home, "echo oops >&2; exit 3", f"""
        [[notifiers]]
        driver = "webhook"
        url = "{endpoint.url}/w"
        events = ["attempt_failed"]
        [[notifiers]]
        driver = "slack"
        webhook_url = "{endpoint.url}/s"
        events = ["success"]
        """)
    result = dotagent("run-now", "nightly", env=cli_env)
    assert "failed (exit 3)" in result.stdout, result.stderr
    [req] = endpoint.requests  # the success-only entry stayed quiet
    body = json.loads(req.body)
    assert (req.path, body["event"], body["body"]) == ("/w", "attempt_failed",
                                                       "nightly exited 3\noops")


def test_a_failing_notifier_leaves_the_outcome_and_is_audited(
        dotagent_home: Path, cli_env: dict[str, str], endpoint: Endpoint) -> None:
    endpoint.status = 500
    agent(dotagent_home, "echo fine", f"""
        [[notifiers]]
        driver = "slack"
        webhook_url = "{endpoint.url}/s"
        [[notifiers]]
        driver = "ntfy"
        topic = "t"
        base_url = "{endpoint.url}"
        token = "${{UNSET_NTFY_TOKEN}}"
        """)
    cli_env.pop("UNSET_NTFY_TOKEN", None)
    result = dotagent("run-now", "nightly", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "notifier:slack" in result.stderr and "slack webhook returned 500" in result.stderr
    assert [r.path for r in endpoint.requests] == ["/s"]  # the placeholder was never sent
    failed = audit_events(dotagent_home, "notifier_failed")
    assert sorted((f["plugin"], f["reason"]) for f in failed) == [
        ("notifier:ntfy", "token: env var ${UNSET_NTFY_TOKEN} is unset"),
        ("notifier:slack", "slack webhook returned 500")]
    [run] = audit_events(dotagent_home, "agent_run")
    assert run["exit_code"] == 0
    assert all(not e["ok"] for e in audit_events(dotagent_home, "plugin_invoked"))


def test_run_now_waits_for_a_slow_endpoint_within_its_timeout(
        dotagent_home: Path, cli_env: dict[str, str], endpoint: Endpoint) -> None:
    endpoint.delay = 60
    agent(dotagent_home, "echo out", f"""
        [[notifiers]]
        driver = "webhook"
        url = "{endpoint.url}"
        timeout_seconds = 1
        """)
    result = dotagent("run-now", "nightly", env=cli_env, timeout=30)
    assert result.returncode == 0
    [failed] = audit_events(dotagent_home, "notifier_failed")
    assert failed["reason"] == "request failed: timed out" or "1s" in failed["reason"]


def test_run_now_expands_from_the_secrets_store_and_never_writes_the_value(
        dotagent_home: Path, cli_env: dict[str, str], endpoint: Endpoint) -> None:
    secret = "hook-path-from-the-store-77"
    env_file = dotagent_home / "secrets.env"
    env_file.write_text(f"HOOK_PATH={secret}\n")
    env_file.chmod(0o600)
    cli_env["HOOK_PATH"] = "from-the-environment"  # the store comes first
    endpoint.status = 404
    agent(dotagent_home, "echo hi", f"""
        [[notifiers]]
        driver = "webhook"
        url = "{endpoint.url}/${{HOOK_PATH}}"
        """)
    result = dotagent("run-now", "nightly", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert [r.path for r in endpoint.requests] == [f"/{secret}"]
    assert "webhook returned 404" in result.stderr and secret not in result.stderr
    for path in dotagent_home.rglob("*"):
        if path.is_file() and path != env_file:
            assert secret.encode() not in path.read_bytes(), path


def test_allowed_plugins_is_enforced_on_a_plugin_notifier(dotagent_home: Path,
                                                          cli_env: dict[str, str]) -> None:
    # Before: doctor warned "not in security.allowed_plugins", but run-now ran the plugin.
    ran = dotagent_home / "plugin-ran"
    plugins = dotagent_home / "plugins"
    plugins.mkdir()
    (plugins / "dotagent-plugin-rec").write_text(
        f"#!/bin/sh\ncat > {ran}\necho '{{\"ok\":true}}'\n")
    (plugins / "dotagent-plugin-rec").chmod(0o755)
    write_agent(dotagent_home / "agents", "nightly", """
        [agent]
        name = "nightly"
        [run]
        command = "./run.sh"
        [security]
        allowed_plugins = ["sink-file"]
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        [[notifiers]]
        driver = "plugin"
        name = "rec"
        """, files={"run.sh": "#!/bin/sh\necho hi\n"})
    result = dotagent("run-now", "nightly", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert not ran.exists()
    [refused] = audit_events(dotagent_home, "plugin_not_allowed")
    assert (refused["plugin"], refused["plugin_kind"], refused["agent"]) == ("rec", "notify",
                                                                             "nightly")
    [failed] = audit_events(dotagent_home, "notifier_failed")
    assert failed["reason"] == "plugin rec is not in security.allowed_plugins (sink-file); not run"
    # Allowed, it runs.
    toml = dotagent_home / "agents" / "nightly" / "agent.toml"
    toml.write_text(toml.read_text().replace('["sink-file"]', '["sink-file", "rec"]'))
    assert dotagent("run-now", "nightly", env=cli_env).returncode == 0
    assert json.loads(ran.read_text())["kind"] == "notify"


def test_a_ping_check_hears_start_then_the_result(dotagent_home: Path, cli_env: dict[str, str],
                                                  endpoint: Endpoint) -> None:
    """`/start` when the agent is running (the agent reports it got the ping's request
    before it finishes, so the order is real), then the result; other drivers hear no start."""
    marker = dotagent_home / "ping-arrived"
    agent(dotagent_home, f"""i=0
while [ ! -e {marker} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
[ -e {marker} ] && echo saw-start
exit 3""", f"""
        [[notifiers]]
        driver = "ping"
        url = "{endpoint.url}/check"
        [[notifiers]]
        driver = "webhook"
        url = "{endpoint.url}/hook"
        """)

    import threading

    def mark_when_started() -> None:
        endpoint.wait_requests(1, timeout=20)
        marker.write_text("")

    watcher = threading.Thread(target=mark_when_started, daemon=True)
    watcher.start()
    result = dotagent("run-now", "nightly", env=cli_env)
    watcher.join(5)
    assert "failed (exit 3)" in result.stdout, result.stderr
    paths = [r.path for r in endpoint.requests]
    assert paths[0] == "/check/start"
    assert sorted(paths[1:]) == ["/check/fail", "/hook"]  # attempt_failed to both
    assert endpoint.requests[0].body == b"nightly/main started"
    log = dotagent_home / "logs" / "agents" / "nightly" / "nightly.log"
    assert "saw-start" in log.read_text()  # the ping arrived while the agent ran


def test_tick_announces_given_up_once_through_the_ladder(dotagent_home: Path,
                                                         cli_env: dict[str, str],
                                                         endpoint: Endpoint) -> None:
    """As in the daemon: the first given_up notice is the ladder's (its episode is opened,
    so a daemon sweep later reminds instead of announcing it again), sent once."""
    write_agent(dotagent_home / "agents", "nightly", f"""
        [agent]
        name = "nightly"
        [run]
        command = "./run.sh"
        [defaults]
        max_retries = 0
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        [[notifiers]]
        driver = "webhook"
        url = "{endpoint.url}/w"
        events = ["given_up"]
        """, files={"run.sh": "#!/bin/sh\necho 'disk on fire' >&2\nexit 3\n"})
    result = dotagent("tick", env=cli_env)
    assert "failed (exit 3)" in result.stdout, result.stderr
    [req] = endpoint.requests
    body = json.loads(req.body)
    assert body["event"] == "given_up"
    assert body["body"] == "🚨 nightly/main gave up after 1 attempts (exit 3)\ndisk on fire"
    ladder = json.loads((dotagent_home / "state/notify/alerts.json").read_text())
    assert ladder["episodes"]["nightly/main/given_up"]["count"] == 1
    dotagent("tick", env=cli_env)  # nothing due: no second notice
    assert len(endpoint.requests) == 1
def test_a_rate_limited_ping_still_reports_the_result_of_its_run(
        dotagent_home: Path, cli_env: dict[str, str], endpoint: Endpoint) -> None:
    """`rate_limit_minutes` on a ping entry: the run's own `/start` must not use up the limit
    and swallow the result that follows it (a check left "started" goes down). A start only
    asks the limit; the result is what sets it, so the next run's pair is skipped whole."""
    agent(dotagent_home, "exit 3", f"""
        [[notifiers]]
        driver = "ping"
        url = "{endpoint.url}/check"
        rate_limit_minutes = 30
        """)
    result = dotagent("run-now", "nightly", env=cli_env)
    assert "failed (exit 3)" in result.stdout, result.stderr
    assert sorted(r.path for r in endpoint.wait_requests(2)) == ["/check/fail", "/check/start"]
    assert dotagent("run-now", "nightly", env=cli_env).returncode == 0
    import time
    time.sleep(0.5)  # a start ping is not waited for; give a wrong one time to arrive
    assert len(endpoint.requests) == 2  # the second run's start and result both held back
