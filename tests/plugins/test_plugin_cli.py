"""`dotagent plugin list/invoke` and doctor's `validate` (real CLI, real plugins)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from plugin_kit import write_plugin

from helpers import dotagent

SHAPED = """import json, sys
verb = sys.argv[1]
if verb == "info":
    print(json.dumps({"name": "demo", "version": "2.1", "kinds": ["notify", "sink"],
                      "platforms": PLATFORMS, "schema": {}}))
elif verb == "validate":
    cfg = json.load(sys.stdin)
    if isinstance(cfg, dict) and cfg.get("url"):
        print(json.dumps({"ok": True}))
    else:
        print(json.dumps({"ok": False, "error": "url is required"}))
else:
    p = json.load(sys.stdin)
    print(json.dumps({"ok": p["message"] != "fail", "echo": p}))
"""


@pytest.fixture
def env(tmp_path: Path, cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "DOTAGENT_PLUGIN_PATH": str(tmp_path / "plugins")}


def demo(tmp_path: Path, platforms: list[str] | None = None) -> Path:
    return write_plugin(tmp_path / "plugins", "demo",
                        SHAPED.replace("PLATFORMS", repr(platforms or ["linux", "macos"])))


def agent_with(home: Path, refs: str) -> Path:
    d = home / "agents" / "a"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "agent.toml"
    path.write_text(f'[agent]\nname = "a"\n[run]\ncommand = "{sys.executable}"\n'
                    '[[schedules]]\nid = "main"\ntype = "interval"\ninterval_minutes = 5\n'
                    + refs)
    return path


def test_list_json(tmp_path: Path, env: dict[str, str], dotagent_home: Path) -> None:
    path = demo(tmp_path)
    agent_with(dotagent_home, '[[on_failure]]\nplugin = "demo"\n[[preflight]]\nplugin = "gone"\n')
    r = dotagent("plugin", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["plugins"]}
    import hashlib
    assert rows["demo"] == {
        "name": "demo", "version": "2.1", "kinds": ["notify", "sink"],
        "platforms": ["linux", "macos"], "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "status": "new",
        "referenced_by": ["a"], "error": None}
    assert rows["gone"]["status"] == "missing" and rows["gone"]["path"] is None
    # the reference plugins are installed next to dotagent (on PATH)
    assert rows["sink-file"]["kinds"] == ["sink"]
    assert rows["preflight-cmd"]["kinds"] == ["preflight"]
    # once a run registered it, it is known; after an edit, drifted
    dotagent("run-now", "a", env=env)
    rows = {row["name"]: row for row in json.loads(
        dotagent("plugin", "list", "--json", env=env).stdout)["plugins"]}
    assert rows["demo"]["status"] == "known"
    path.write_text(path.read_text() + "\n# changed\n")
    rows = {row["name"]: row for row in json.loads(
        dotagent("plugin", "list", "--json", env=env).stdout)["plugins"]}
    assert rows["demo"]["status"] == "drifted"
    human = dotagent("plugin", "list", env=env).stdout
    assert "demo  2.1  notify,sink  drifted" in human


def test_invoke(tmp_path: Path, env: dict[str, str]) -> None:
    demo(tmp_path)
    r = dotagent("plugin", "invoke", "demo", "--kind", "notify", "--config", '{"a": [1]}',
                 "--message", "hello", "--agent", "x", "--schedule", "s", "--event",
                 "given_up", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["echo"] == {"kind": "notify", "agent": "x", "schedule": "s",
                                            "event": "given_up", "message": "hello",
                                            "config": {"a": [1]}}
    r = dotagent("plugin", "invoke", "demo", "--kind", "sink", "--message", "fail", env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    r = dotagent("plugin", "invoke", "demo", "--kind", "sink", "--config", "{nope", env=env)
    assert r.returncode == 2 and "--config" in r.stderr and "Traceback" not in r.stderr
    r = dotagent("plugin", "invoke", "nothere", "--kind", "sink", env=env)
    assert r.returncode == 1 and "plugin not found: nothere" in r.stderr


def test_invoke_refuses_a_name_a_manifest_would_refuse(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    # Before: the name went to the search as typed and came back raw in the error, escapes
    # and newlines included.
    for name in ("x/../../evil", "a\nb\x1b[31m", ".."):
        r = dotagent("plugin", "invoke", name, "--kind", "notify", env=env)
        assert r.returncode == 2, (name, r.stderr)
        assert "\x1b" not in r.stderr and "Traceback" not in r.stderr
        assert "plugin name" in r.stderr


def test_doctor_validates_each_reference(tmp_path: Path, env: dict[str, str],
                                         dotagent_home: Path) -> None:
    demo(tmp_path)
    manifest = agent_with(dotagent_home, '[[on_failure]]\nplugin = "demo"\n'
                          'config = { url = "https://x" }\n\n'
                          '[[on_success]]\nplugin = "demo"\nconfig = { other = 1 }\n')
    r = dotagent("doctor", env=env)
    assert r.returncode != 0
    assert f"{manifest}:14: on_success[0].plugin: plugin 'demo' rejects its config: url is " \
           "required" in r.stdout + r.stderr, r.stdout + r.stderr
    data = json.loads(dotagent("doctor", "--json", env=env).stdout)
    [entry] = next(m for m in data["manifests"] if m["name"] == "a")["plugins"]
    assert entry["validate"] == {"on_failure[0].plugin": {"ok": True},
                                 "on_success[0].plugin": {"ok": False,
                                                          "error": "url is required"}}


def test_doctor_checks_platforms(tmp_path: Path, env: dict[str, str],
                                 dotagent_home: Path) -> None:
    demo(tmp_path, platforms=["windows"])
    agent_with(dotagent_home, '[[on_failure]]\nplugin = "demo"\nconfig = { url = "u" }\n')
    r = dotagent("doctor", env=env)
    assert r.returncode != 0
    assert "does not support linux" in r.stdout + r.stderr


def test_invoke_does_not_show_a_secret_the_plugin_prints(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    # The plugin echoes the message it was sent; the message holds a value of secrets.env.
    home = Path(env["DOTAGENT_HOME"])
    secrets = home / "secrets.env"
    secrets.write_text("API_TOKEN=tok-9f8e7d6c5b\n")
    secrets.chmod(0o600)
    demo(tmp_path)
    r = dotagent("plugin", "invoke", "demo", "--kind", "notify", "--message",
                 "token is tok-9f8e7d6c5b", env=env)
    assert r.returncode == 0, r.stderr
    assert "tok-9f8e7d6c5b" not in r.stdout + r.stderr
    assert json.loads(r.stdout)["echo"]["message"] == "token is [REDACTED]"
