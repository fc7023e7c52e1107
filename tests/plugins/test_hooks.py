"""Preflight, sink and failure hooks through `dotagent run-now` (a real CLI process, real
plugin executables): SPEC S3.6, S4.3, S14.10, S14.11."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from plugin_kit import RECORDER, audit_events, history_rows, recorded, write_plugin

from helpers import dotagent


@pytest.fixture
def setup(tmp_path: Path, dotagent_home: Path, cli_env: dict[str, str]):  # type: ignore[no-untyped-def]
    pdir = tmp_path / "plugins"
    rec = tmp_path / "rec"
    rec.mkdir()
    env = {**cli_env, "DOTAGENT_PLUGIN_PATH": str(pdir), "RECORD_DIR": str(rec)}
    return pdir, rec, env, dotagent_home


def agent(home: Path, name: str, script: str, hooks: str = "", security: str = "") -> Path:
    d = home / "agents" / name
    d.mkdir(parents=True, exist_ok=True)
    run = d / "run.py"
    run.write_text(f"#!{sys.executable}\n" + textwrap.dedent(script).lstrip())
    run.chmod(0o755)
    (d / "agent.toml").write_text(
        f'[agent]\nname = "{name}"\ntimeout_seconds = 30\n[run]\ncommand = "{run}"\n'
        '[[schedules]]\nid = "main"\ntype = "interval"\ninterval_minutes = 60\n'
        + textwrap.dedent(hooks) + textwrap.dedent(security))
    return d


def test_preflight_refusal_stops_the_run(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, _rec, env, home = setup
    write_plugin(pdir, "gate", "import json, sys\nsys.stdin.read()\n"
                 "print(json.dumps({'ok': False, 'error': 'vpn down', "
                 "'suggest': 'connect the VPN'}))\n")
    marker = home / "ran"
    agent(home, "a", f"open({str(marker)!r}, 'w').write('x')\n",
          '[[preflight]]\nplugin = "gate"\nconfig = {x = 1}\n')
    r = dotagent("run-now", "a", env=env)
    assert r.returncode == 0, r.stderr
    assert "aborted by preflight gate (connect the VPN)" in r.stdout
    assert not marker.exists()
    failed = audit_events(home, "preflight_failed")
    assert [(e["plugin"], e["suggest"]) for e in failed] == [("gate", "connect the VPN")]
    invoked = audit_events(home, "plugin_invoked")
    assert [(e["plugin"], e["plugin_kind"], e["ok"]) for e in invoked] == [
        ("gate", "preflight", False)]
    assert [row["outcome"] for row in history_rows(home)] == ["preflight_failed"]
    assert not audit_events(home, "agent_run")


def test_preflight_ok_lets_the_run_go_and_payload_is_upstreams(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, rec, env, home = setup
    write_plugin(pdir, "rec", RECORDER)
    agent(home, "a", "print('hi')\n", '[[preflight]]\nplugin = "rec"\n')
    r = dotagent("run-now", "a", env=env)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    assert recorded(rec) == [b'{"kind":"preflight","agent":"a","schedule":"main",'
                             b'"event":"preflight","message":null,"config":null}']


def test_missing_preflight_plugin_fails_the_preflight(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, _rec, env, home = setup
    agent(home, "a", "print('hi')\n", '[[preflight]]\nplugin = "absent"\n')
    r = dotagent("run-now", "a", "--json", env=env)
    result = json.loads(r.stdout)["result"]
    assert result["kind"] == "preflight_failed" and result["plugin"] == "absent"
    assert result["suggest"].startswith("plugin not found: absent (no dotagent-plugin-absent in")
    assert str(pdir) in result["suggest"]


def test_sink_gets_stdout_exactly(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, rec, env, home = setup
    write_plugin(pdir, "rec", RECORDER)
    # 700 lines (beyond the 500-line tail), CRLF, no final newline, non-ASCII, and one
    # invalid UTF-8 byte (sent as U+FFFD: a JSON string holds text).
    agent(home, "a", """
        import sys
        out = sys.stdout.buffer
        for i in range(700):
            out.write(f"line {i}\\r\\n".encode())
        out.write("é ✓ ".encode() + b"\\xff" + b"end")
        """, '[[on_success]]\nplugin = "rec"\nconfig = {path = "x"}\n'
             '[[on_failure]]\nplugin = "rec"\n')
    r = dotagent("run-now", "a", env=env)
    assert r.returncode == 0, r.stderr
    [payload] = [json.loads(b) for b in recorded(rec)]
    expected = "".join(f"line {i}\r\n" for i in range(700)) + "é ✓ \ufffdend"
    assert list(payload) == ["kind", "agent", "schedule", "event", "message", "config"]
    assert payload["kind"] == "sink" and payload["event"] == "success"
    assert payload["message"] == expected and payload["config"] == {"path": "x"}
    assert [(e["plugin_kind"], e["ok"]) for e in audit_events(home, "plugin_invoked")] == [
        ("sink", True)]


def test_on_failure_events_filter(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, rec, env, home = setup
    write_plugin(pdir, "rec", RECORDER)
    agent(home, "a", "import sys\nsys.stderr.write('bad\\n')\nsys.exit(3)\n",
          '[[on_failure]]\nplugin = "rec"\nevents = ["given_up"]\n'
          '[[on_failure]]\nplugin = "rec"\nevents = ["attempt_failed"]\nconfig = "second"\n'
          '[[on_failure]]\nplugin = "rec"\n'
          '[[on_success]]\nplugin = "rec"\n')
    r = dotagent("run-now", "a", env=env)
    assert r.returncode == 0, r.stderr
    payloads = [json.loads(b) for b in recorded(rec)]
    assert [(p["kind"], p["event"], p["config"]) for p in payloads] == [
        ("notify", "attempt_failed", "second"), ("notify", "attempt_failed", None)]
    assert payloads[0]["message"] == "a exited 3\nbad"


def test_allowed_plugins_refusal_is_audited(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, rec, env, home = setup
    write_plugin(pdir, "rec", RECORDER)
    write_plugin(pdir, "other", RECORDER)
    agent(home, "a", "print('hi')\n",
          '[[on_success]]\nplugin = "other"\n[[on_success]]\nplugin = "rec"\n',
          '[security]\nallowed_plugins = ["rec"]\n')
    r = dotagent("run-now", "a", env=env)
    assert r.returncode == 0
    assert "not in security.allowed_plugins" in r.stderr
    assert len(recorded(rec)) == 1  # only "rec" ran
    refused = audit_events(home, "plugin_not_allowed")
    assert [(e["plugin"], e["plugin_kind"], e["severity"]) for e in refused] == [
        ("other", "sink", "critical")]
    assert [(e["plugin"], e["ok"]) for e in audit_events(home, "plugin_invoked")] == [
        ("other", False), ("rec", True)]


def test_refused_preflight_plugin_stops_the_run(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, rec, env, home = setup
    write_plugin(pdir, "rec", RECORDER)
    agent(home, "a", "print('hi')\n", '[[preflight]]\nplugin = "rec"\n',
          '[security]\nallowed_plugins = ["other"]\n')
    r = dotagent("run-now", "a", "--json", env=env)
    result = json.loads(r.stdout)["result"]
    assert result["kind"] == "preflight_failed" and "allowed_plugins" in result["suggest"]
    assert recorded(rec) == []


def test_failing_sink_does_not_change_the_outcome(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, _rec, env, home = setup
    write_plugin(pdir, "crash", "import sys\nsys.stderr.write('disk full\\n')\nsys.exit(5)\n")
    agent(home, "a", "print('hi')\n", '[[on_success]]\nplugin = "crash"\n')
    r = dotagent("run-now", "a", "--json", env=env)
    assert json.loads(r.stdout)["result"]["exit_code"] == 0
    assert "plugin crash failed (exit 5): disk full" in r.stderr
    assert [row["outcome"] for row in history_rows(home)] == ["ok"]
    assert os.environ.get("DOTAGENT_HOME")


def test_a_hanging_failure_hook_is_killed_at_its_deadline_and_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, _rec, env, home = setup
    write_plugin(pdir, "hang", "import sys, time\nsys.stdin.read()\ntime.sleep(120)\n")
    agent(home, "a", "import sys\nsys.exit(1)\n",
          '[[on_failure]]\nplugin = "hang"\ntimeout_seconds = 1\n')
    import time
    t0 = time.monotonic()
    r = dotagent("run-now", "a", env=env)
    assert time.monotonic() - t0 < 30
    assert "plugin hang.invoke exceeded 1s — killed" in r.stderr
    assert [(e["plugin_kind"], e["ok"]) for e in audit_events(home, "plugin_invoked")] == [
        ("notify", False)]
    assert [row["outcome"] for row in history_rows(home)] == ["failed"]


def test_stdout_over_the_sink_cap_is_not_sent(setup) -> None:  # type: ignore[no-untyped-def]
    pdir, rec, env, home = setup
    write_plugin(pdir, "rec", RECORDER)
    agent(home, "a", "import sys\nsys.stdout.buffer.write(b'z' * (9 * 1024 * 1024))\n",
          '[[on_success]]\nplugin = "rec"\n')
    r = dotagent("run-now", "a", env=env)
    assert r.returncode == 0
    assert "larger than 8 MiB" in r.stderr
    assert recorded(rec) == []
    assert [(e["plugin_kind"], e["ok"]) for e in audit_events(home, "plugin_invoked")] == [
        ("sink", False)]
