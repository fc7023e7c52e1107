"""Examples in docs/ must be true."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dotagent.manifest import parse_manifest

from conftest import REPO
from helpers import dotagent


def test_manifest_reference_example_is_valid() -> None:
    text = (REPO / "docs/manifest.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    result = parse_manifest(block.group(1).encode(), Path("docs/manifest.md"))
    assert result.errors == [] and result.warnings == []
    m = result.manifest
    assert m is not None
    assert [s.type for s in m.schedules] == ["cron", "interval", "expression"]
    assert m.schedules[0].slug == "period_yesterday"


def test_example_agents_are_clean() -> None:
    for toml in sorted((REPO / "examples/agents").glob("*/agent.toml")):
        result = parse_manifest(toml.read_bytes(), toml)
        assert result.errors == [] and result.warnings == [], toml


def test_manifest_reference_example_passes_doctor(tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    """The complete example, installed with the plugins it names, is clean for `doctor`:
    no errors and no warnings (its [security] section agrees with the rest of it)."""
    text = (REPO / "docs/manifest.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    agent = tmp_path / "agents" / "daily-report"
    agent.mkdir(parents=True)
    (agent / "agent.toml").write_text(block.group(1))
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in ("preflight-cmd", "sink-file", "notify-custom"):
        stub = plugins / f"dotagent-plugin-{name}"
        stub.write_text("#!/bin/sh\ncat >/dev/null\necho '{\"ok\": true}'\n")
        stub.chmod(0o755)
    cli_env.update(DOTAGENT_ROOT=str(tmp_path / "agents"), DOTAGENT_PLUGIN_PATH=str(plugins))
    p = dotagent("doctor", "--json", env=cli_env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    [m] = report["manifests"]
    assert (m["name"], m["status"], m["errors"], m["warnings"]) == (
        "daily-report", "ok", [], []), m
    assert report["general"] == []
